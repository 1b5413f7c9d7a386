// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseExposition(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/exposition.txt")
	require.NoError(t, err)
	defer func() { _ = f.Close() }()

	rows, err := parseExposition(f)
	require.NoError(t, err)
	want := []row{
		{
			containerKey: containerKey{"demo-batch", "nightly-report", "report"},
			Limit:        48 * mib, HasLimit: true,
			// Two pods of the Job, one after the other (a retry): their kills add up.
			OOMKills: 2, HasOOMKills: true,
		},
		{
			containerKey: containerKey{"demo-payments", "ledger", "app"},
			WorkingSet:   40 * mib, HasWorkingSet: true,
			Limit: 64 * mib, HasLimit: true,
			Utilization: 0.625, HasUtilization: true,
			Restarts: 3, HasRestarts: true,
			OOMKills: 3, HasOOMKills: true,
		},
		{
			// A pod that no Deployment or Job owns is its own workload.
			containerKey: containerKey{"demo-shop", "debug", "shell"},
			OOMKills:     1, HasOOMKills: true,
		},
		{
			containerKey: containerKey{"demo-shop", "frontend", "web"},
			WorkingSet:   25.6 * mib, HasWorkingSet: true,
			Limit: 64 * mib, HasLimit: true,
			Utilization: 0.4, HasUtilization: true,
			Restarts: 0, HasRestarts: true,
			OOMKills: 0, HasOOMKills: true,
		},
	}
	assert.Equal(t, want, rows, "the per-instance flag and target_info are not the demo's, and a container without a value has no flag set")
}

func TestParseExpositionIgnoresSeriesWithoutAContainer(t *testing.T) {
	t.Parallel()
	rows, err := parseExposition(strings.NewReader(`# TYPE k8s_container_oom_kills_total counter
k8s_container_oom_kills_total{k8s_namespace_name="a",k8s_pod_name="p"} 4
k8s_container_oom_kills_total 7
`))
	require.NoError(t, err)
	assert.Empty(t, rows)
}

func TestParseExpositionRefusesGarbage(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{
		"no value":       "k8s_container_oom_kills_total{k8s_pod_name=\"p\"}\n",
		"bad value":      "k8s_container_oom_kills_total 1e\n",
		"unclosed label": "k8s_container_oom_kills_total{k8s_pod_name=\"p} 1\n",
		"type twice":     "# TYPE x counter\n# TYPE x gauge\nx 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := parseExposition(strings.NewReader(text))
			assert.Error(t, err)
		})
	}
}

func TestScrapeAsksForTheTextFormat(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile("testdata/exposition.txt")
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Contains(t, r.Header.Get("Accept"), "text/plain")
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(text)
	}))
	defer srv.Close()
	rows, err := scrape(context.Background(), srv.Client(), srv.URL)
	require.NoError(t, err)
	assert.Len(t, rows, 4)
}

func TestScrapeReportsAnHTTPError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, err := scrape(context.Background(), srv.Client(), srv.URL)
	require.ErrorContains(t, err, "503")
}

// TestParseLiveExposition reads what the demo's prometheus exporter served 63 s after the
// workload was created: every container of its Deployments and Job, named by its workload
// rather than by its pod's generated name, with the counts it showed then. The API server
// showed a moment later one kill more for ledger/app, ended less than 2 s before the capture:
// not exported yet.
func TestParseLiveExposition(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/exposition-live.txt")
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	rows, err := parseExposition(f)
	require.NoError(t, err)
	kills, processKills := map[string]float64{}, map[string]float64{}
	for _, r := range rows {
		assert.True(t, r.HasOOMKills && r.HasProcessKills && r.HasRestarts && r.HasLimit, r.containerKey)
		kills[r.String()] = r.OOMKills
		processKills[r.String()] = r.ProcessKills
	}
	assert.Equal(t, map[string]float64{
		"demo-batch/nightly-report/report": 1,
		"demo-batch/thumbnailer/resize":    0,
		"demo-payments/accounts/app":       0,
		"demo-payments/accounts/migrate":   4,
		"demo-payments/ledger/app":         3,
		"demo-shop/cart/app":               0,
		"demo-shop/cart/proxy":             0,
		"demo-shop/frontend/web":           0,
	}, kills)
	assert.Equal(t, 13.0, processKills["demo-batch/thumbnailer/resize"], "children OOM-killed while PID 1 lived")
}
