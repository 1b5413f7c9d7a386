// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The series the demo shows, by their names on the prometheus exporter (dots become
// underscores, the unit a suffix, and a monotonic sum ends in _total).
const (
	metricOOMKills     = "k8s_container_oom_kills_total"
	metricProcessKills = "k8s_container_process_oom_kills_total"
	metricRestarts     = "k8s_container_restart_count"
	metricWorkingSet   = "container_memory_working_set_bytes"
	metricLimit        = "k8s_container_memory_limit_current_bytes"
	metricUtilization  = "k8s_container_memory_limit_utilization_ratio"
	metricSuggested    = "k8s_container_memory_limit_suggested_bytes"

	labelNamespace  = "k8s_namespace_name"
	labelDeployment = "k8s_deployment_name"
	labelJob        = "k8s_job_name"
	labelPod        = "k8s_pod_name"
	labelContainer  = "k8s_container_name"
)

// containerKey names a container of a workload across its pods. The controllers generate pod
// names (ledger-5d8f7c9b4-x2k9p) and a replaced pod gets a new one; the Deployment or Job that
// the collector names stays. A pod without either is its own workload.
type containerKey struct {
	Namespace, Workload, Container string
}

func (k containerKey) String() string { return k.Namespace + "/" + k.Workload + "/" + k.Container }

// row is what the demo shows of one container. A value that the collector did not report (the
// kubelet has no stats for a container that is not running) has its Has flag false.
type row struct {
	containerKey
	WorkingSet, Limit, Utilization float64
	HasWorkingSet, HasLimit        bool
	HasUtilization                 bool
	Restarts                       float64
	HasRestarts                    bool
	OOMKills                       float64
	HasOOMKills                    bool
	// ProcessKills are processes OOM-killed while their container lived.
	ProcessKills    float64
	HasProcessKills bool
	// Suggested is the limit the kills at the container's own limit argue for.
	Suggested    float64
	HasSuggested bool
}

// parseExposition reads the Prometheus text exposition and returns one row per workload's
// container that any of the demo's series names, sorted by namespace, workload and container.
func parseExposition(r io.Reader) ([]row, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the exposition: %w", err)
	}
	rows := map[containerKey]*row{}
	for name, fam := range families {
		set := setterFor(name)
		if set == nil {
			continue
		}
		for _, m := range fam.GetMetric() {
			k, ok := keyOf(m)
			if !ok {
				continue
			}
			r := rows[k]
			if r == nil {
				r = &row{containerKey: k}
				rows[k] = r
			}
			set(r, valueOf(m))
		}
	}
	out := make([]row, 0, len(rows))
	for _, k := range slices.SortedFunc(maps.Keys(rows), compareKeys) {
		out = append(out, *rows[k])
	}
	return out, nil
}

// setterFor returns how a series of that name fills a row, or nil for series the demo ignores.
// A workload's container can have several series of one name (one per pod, and a re-created
// pod has a new name and UID): OOM kills and restarts add up, the other values are those of the
// last series read.
func setterFor(name string) func(*row, float64) {
	switch name {
	case metricOOMKills:
		return func(r *row, v float64) { r.OOMKills += v; r.HasOOMKills = true }
	case metricProcessKills:
		return func(r *row, v float64) { r.ProcessKills += v; r.HasProcessKills = true }
	case metricRestarts:
		return func(r *row, v float64) { r.Restarts += v; r.HasRestarts = true }
	case metricWorkingSet:
		return func(r *row, v float64) { r.WorkingSet, r.HasWorkingSet = v, true }
	case metricLimit:
		return func(r *row, v float64) { r.Limit, r.HasLimit = v, true }
	case metricUtilization:
		return func(r *row, v float64) { r.Utilization, r.HasUtilization = v, true }
	case metricSuggested:
		return func(r *row, v float64) { r.Suggested, r.HasSuggested = max(r.Suggested, v), true }
	}
	return nil
}

func keyOf(m *dto.Metric) (containerKey, bool) {
	var k containerKey
	var deployment, job, pod string
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case labelNamespace:
			k.Namespace = l.GetValue()
		case labelDeployment:
			deployment = l.GetValue()
		case labelJob:
			job = l.GetValue()
		case labelPod:
			pod = l.GetValue()
		case labelContainer:
			k.Container = l.GetValue()
		}
	}
	k.Workload = cmp.Or(deployment, job, pod)
	return k, k.Namespace != "" && pod != "" && k.Container != ""
}

func valueOf(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func compareKeys(a, b containerKey) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Workload, b.Workload), strings.Compare(a.Container, b.Container))
}

// scrape fetches the prometheus exporter's endpoint and parses it.
func scrape(ctx context.Context, client *http.Client, url string) ([]row, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, err
	}
	// The text format, not OpenMetrics or protobuf.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseExposition(resp.Body)
}
