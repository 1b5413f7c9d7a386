// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// promScrapeInterval is how often the test's Prometheus scrapes its targets.
const promScrapeInterval = time.Second

// promServer is a real Prometheus (Debian's package, 2.x, installed by make cluster-deps; or
// Prometheus 3, built by make cluster-bin) that a test starts on a loopback port with its own
// configuration and storage, and queries through its HTTP API as a user's dashboards and alerts
// would.
type promServer struct {
	*backend
	t   *testing.T
	url string
}

// startPrometheus starts a Prometheus that scrapes targets (host:port) every
// promScrapeInterval; it is stopped when the test ends.
func startPrometheus(t *testing.T, targets ...string) *promServer {
	t.Helper()
	return startPrometheusWith(t, promOptions{targets: targets})
}

// promOptions say what a test's Prometheus does besides scraping its targets.
type promOptions struct {
	targets []string
	// rules are alert and recording rule files, evaluated every promScrapeInterval.
	rules []string
	// remoteWrite accepts samples pushed to /api/v1/write, as a remote-write backend does.
	remoteWrite bool
	// otlp runs Prometheus 3 instead, which takes OTLP metrics at /api/v1/otlp/v1/metrics as
	// deploy/prometheus/otlp.yaml says: its otlp: settings and its flags.
	otlp bool
}

// otlpFlags are the flags deploy/prometheus/otlp.yaml tells users to start Prometheus with: a
// comment line each.
var otlpFlags = regexp.MustCompile(`(?m)^#\s+(--[a-z.-]+(?:=[a-z-]+)?)$`)

func startPrometheusWith(t *testing.T, o promOptions) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	require.NoError(t, err, "Prometheus is not installed: make cluster-deps installs Debian's package")
	var otlp []byte
	var flags [][]string
	if o.otlp {
		bin = need(t).cluster.Bin("prometheus3")
		root, err := filepath.Abs(filepath.Join("..", "..", ".."))
		require.NoError(t, err)
		otlp, err = os.ReadFile(filepath.Join(root, "deploy", "prometheus", "otlp.yaml"))
		require.NoError(t, err)
		flags = otlpFlags.FindAllStringSubmatch(string(otlp), -1)
		require.NotEmpty(t, flags, "deploy/prometheus/otlp.yaml names Prometheus's flags")
	}
	dir := t.TempDir()
	quoted := make([]string, len(o.targets))
	for i, target := range o.targets {
		quoted[i] = strconv.Quote(target)
	}
	rules := make([]string, len(o.rules))
	for i, r := range o.rules {
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
`, promScrapeInterval, strings.Join(quoted, ", "), strings.Join(rules, ", ")) + string(otlp)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=info",
	)
	if o.remoteWrite {
		cmd.Args = append(cmd.Args, "--web.enable-remote-write-receiver")
	}
	for _, f := range flags {
		cmd.Args = append(cmd.Args, f[1])
	}
	cmd.Dir = dir
	p := &promServer{t: t, url: "http://" + addr}
	p.backend = startBackend(t, "prometheus", cmd, dir, p.url+"/-/ready")
	return p
}

// promSample is one element of an instant vector.
type promSample struct {
	Labels map[string]string
	Time   time.Time
	Value  float64
}

// promSeries is one element of a range vector.
type promSeries struct {
	Labels  map[string]string
	Samples []promSample
}

type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (p *promServer) get(path string, params url.Values) (json.RawMessage, error) {
	body, _, err := get(p.url + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	var r promResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, body, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s %s: %s: %s", path, params.Encode(), r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// pair decodes a [<unix seconds>, "<value>"] sample.
func pair(raw [2]json.RawMessage) (promSample, error) {
	var ts float64
	var v string
	if err := json.Unmarshal(raw[0], &ts); err != nil {
		return promSample{}, err
	}
	if err := json.Unmarshal(raw[1], &v); err != nil {
		return promSample{}, err
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return promSample{}, err
	}
	sec, frac := math.Modf(ts)
	return promSample{Time: time.Unix(int64(sec), int64(frac*1e9)), Value: f}, nil
}

// instant evaluates a PromQL expression that yields an instant vector, now.
func (p *promServer) instant(query string) ([]promSample, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {query}})
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
	out := make([]promSample, 0, len(d.Result))
	for _, r := range d.Result {
		s, err := pair(r.Value)
		if err != nil {
			return nil, err
		}
		s.Labels = r.Metric
		out = append(out, s)
	}
	return out, nil
}

// rangeVector evaluates a PromQL range selector (a matrix), now.
func (p *promServer) rangeVector(query string) ([]promSeries, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {query}})
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
	out := make([]promSeries, 0, len(d.Result))
	for _, r := range d.Result {
		ser := promSeries{Labels: r.Metric}
		for _, v := range r.Values {
			s, err := pair(v)
			if err != nil {
				return nil, err
			}
			ser.Samples = append(ser.Samples, s)
		}
		out = append(out, ser)
	}
	return out, nil
}

// series lists the label sets of every series matching a selector that had a sample between
// start and end.
func (p *promServer) series(match string, start, end time.Time) ([]map[string]string, error) {
	data, err := p.get("/api/v1/series", url.Values{
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

// one evaluates a query that must yield exactly one sample.
func (p *promServer) one(query string) (promSample, error) {
	v, err := p.instant(query)
	if err != nil {
		return promSample{}, err
	}
	if len(v) != 1 {
		return promSample{}, fmt.Errorf("%s: %d samples, want 1: %v", query, len(v), v)
	}
	return v[0], nil
}

// waitFor waits until a query yields exactly one sample for which f holds, and returns it.
func (p *promServer) waitFor(query string, within time.Duration, f func(promSample) bool) promSample {
	p.t.Helper()
	var last promSample
	var lastErr error
	require.Eventuallyf(p.t, func() bool {
		s, err := p.one(query)
		last, lastErr = s, err
		return err == nil && f(s)
	}, within, 100*time.Millisecond, "prometheus: %s: condition not reached; last sample %+v, error %v", query, &last, lastErr)
	return last
}

// sampleAfter waits until Prometheus holds a sample of the query scraped after since, and
// returns it.
func (p *promServer) sampleAfter(query string, since time.Time, within time.Duration) promSample {
	p.t.Helper()
	p.waitFor("timestamp("+query+")", within, func(s promSample) bool {
		return time.Unix(0, int64(s.Value*1e9)).After(since)
	})
	s, err := p.one(query)
	require.NoError(p.t, err)
	return s
}
