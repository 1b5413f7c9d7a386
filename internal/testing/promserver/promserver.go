// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package promserver runs a real Prometheus (Debian's package, 2.x, or Prometheus 3 built by make
// cluster-bin) that a test starts on a loopback port with its own configuration and storage, and
// queries through its HTTP API as a user's dashboards and alerts would.
package promserver

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/internal/testing/backend"
)

// Options say what a test's Prometheus does.
type Options struct {
	// Bin is the Prometheus binary; default: prometheus on the PATH (Debian's package).
	Bin string
	// Targets (host:port) are scraped every Interval.
	Targets []string
	// Rules are alert and recording rule files, evaluated every Interval.
	Rules []string
	// Interval is the scrape and evaluation interval. Default: 1s.
	Interval time.Duration
	// RemoteWrite accepts samples pushed to /api/v1/write, as a remote-write backend does.
	RemoteWrite bool
	// Config is appended to the configuration file (e.g. an otlp: block); Flags to the command.
	Config string
	Flags  []string
}

// Server is a started Prometheus, stopped when the test ends.
type Server struct {
	*backend.Process
	t   testing.TB
	URL string
}

// Start starts a Prometheus as o says and waits until it is ready.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := o.Bin
	if bin == "" {
		var err error
		bin, err = exec.LookPath("prometheus")
		require.NoError(t, err, "Prometheus is not installed: make cluster-deps installs Debian's package")
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	dir := t.TempDir()
	quoted := make([]string, len(o.Targets))
	for i, target := range o.Targets {
		quoted[i] = strconv.Quote(target)
	}
	rules := make([]string, len(o.Rules))
	for i, r := range o.Rules {
		rules[i] = strconv.Quote(r)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
rule_files: [%[3]s]
scrape_configs:
  - job_name: oomwatch
    static_configs:
      - targets: [%[2]s]
`, o.Interval, strings.Join(quoted, ", "), strings.Join(rules, ", ")) + o.Config
	cfgFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	cmd := exec.Command(bin, //nolint:gosec // G204: the test's own Prometheus
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=info",
	)
	if o.RemoteWrite {
		cmd.Args = append(cmd.Args, "--web.enable-remote-write-receiver")
	}
	cmd.Args = append(cmd.Args, o.Flags...)
	cmd.Dir = dir
	s := &Server{t: t, URL: "http://" + addr}
	s.Process = backend.Start(t, "prometheus", cmd, dir, s.URL+"/-/ready")
	return s
}

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Time   time.Time
	Value  float64
}

// Series is one element of a range vector.
type Series struct {
	Labels  map[string]string
	Samples []Sample
}

type response struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (s *Server) get(path string, params url.Values) (json.RawMessage, error) {
	body, _, err := backend.Get(s.URL + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	var r response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, body, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s %s: %s: %s", path, params.Encode(), r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// pair decodes a [<unix seconds>, "<value>"] sample.
func pair(raw [2]json.RawMessage) (Sample, error) {
	var ts float64
	var v string
	if err := json.Unmarshal(raw[0], &ts); err != nil {
		return Sample{}, err
	}
	if err := json.Unmarshal(raw[1], &v); err != nil {
		return Sample{}, err
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return Sample{}, err
	}
	sec, frac := math.Modf(ts)
	return Sample{Time: time.Unix(int64(sec), int64(frac*1e9)), Value: f}, nil
}

// Instant evaluates a PromQL expression that yields an instant vector, now.
func (s *Server) Instant(query string) ([]Sample, error) {
	data, err := s.get("/api/v1/query", url.Values{"query": {query}})
	if err != nil {
		return nil, err
	}
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string  `json:"metric"`
			Value  [2]json.RawMessage `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("%s: a %s, not a vector", query, d.ResultType)
	}
	out := make([]Sample, 0, len(d.Result))
	for _, r := range d.Result {
		smp, err := pair(r.Value)
		if err != nil {
			return nil, err
		}
		smp.Labels = r.Metric
		out = append(out, smp)
	}
	return out, nil
}

// RangeVector evaluates a PromQL range selector (a matrix), now.
func (s *Server) RangeVector(query string) ([]Series, error) {
	data, err := s.get("/api/v1/query", url.Values{"query": {query}})
	if err != nil {
		return nil, err
	}
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string    `json:"metric"`
			Values [][2]json.RawMessage `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "matrix" {
		return nil, fmt.Errorf("%s: a %s, not a matrix", query, d.ResultType)
	}
	out := make([]Series, 0, len(d.Result))
	for _, r := range d.Result {
		ser := Series{Labels: r.Metric}
		for _, v := range r.Values {
			smp, err := pair(v)
			if err != nil {
				return nil, err
			}
			ser.Samples = append(ser.Samples, smp)
		}
		out = append(out, ser)
	}
	return out, nil
}

// SeriesOf lists the label sets of every series matching a selector that had a sample between
// start and end.
func (s *Server) SeriesOf(match string, start, end time.Time) ([]map[string]string, error) {
	data, err := s.get("/api/v1/series", url.Values{
		"match[]": {match},
		"start":   {strconv.FormatInt(start.Unix(), 10)},
		"end":     {strconv.FormatInt(end.Unix()+1, 10)},
	})
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	return out, json.Unmarshal(data, &out)
}

// One evaluates a query that must yield exactly one sample.
func (s *Server) One(query string) (Sample, error) {
	v, err := s.Instant(query)
	if err != nil {
		return Sample{}, err
	}
	if len(v) != 1 {
		return Sample{}, fmt.Errorf("%s: %d samples, want 1: %v", query, len(v), v)
	}
	return v[0], nil
}

// WaitFor waits until a query yields exactly one sample for which f holds, and returns it.
func (s *Server) WaitFor(query string, within time.Duration, f func(Sample) bool) Sample {
	s.t.Helper()
	var last Sample
	var lastErr error
	require.Eventuallyf(s.t, func() bool {
		smp, err := s.One(query)
		last, lastErr = smp, err
		return err == nil && f(smp)
	}, within, 100*time.Millisecond, "prometheus: %s: condition not reached; last sample %+v, error %v", query, &last, lastErr)
	return last
}

// SampleAfter waits until Prometheus holds a sample of the query scraped after since, and
// returns it.
func (s *Server) SampleAfter(query string, since time.Time, within time.Duration) Sample {
	s.t.Helper()
	s.WaitFor("timestamp("+query+")", within, func(smp Sample) bool {
		return time.Unix(0, int64(smp.Value*1e9)).After(since)
	})
	smp, err := s.One(query)
	require.NoError(s.t, err)
	return smp
}

// Values are the values of a query's samples.
func Values(samples []Sample) []float64 {
	out := make([]float64, 0, len(samples))
	for _, smp := range samples {
		out = append(out, smp.Value)
	}
	return out
}
