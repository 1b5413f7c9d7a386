// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var tableRows = []row{
	{
		containerKey: containerKey{"demo-batch", "nightly-report", "report"},
		Limit:        48 * mib, HasLimit: true, Restarts: 0, HasRestarts: true, OOMKills: 1, HasOOMKills: true,
		ProcessKills: 0, HasProcessKills: true, Suggested: 80 * mib, HasSuggested: true,
	},
	{
		containerKey: containerKey{"demo-batch", "thumbnailer", "resize"},
		Limit:        64 * mib, HasLimit: true, Restarts: 0, HasRestarts: true, OOMKills: 0, HasOOMKills: true,
		ProcessKills: 104, HasProcessKills: true,
	},
	{
		containerKey: containerKey{"demo-payments", "ledger", "app"},
		WorkingSet:   41.25 * mib, HasWorkingSet: true, Limit: 64 * mib, HasLimit: true,
		Utilization: 0.6445, HasUtilization: true, Restarts: 12, HasRestarts: true, OOMKills: 13, HasOOMKills: true,
	},
	{containerKey: containerKey{"demo-shop", "frontend", "web"}},
}

var tableWhy = map[containerKey]explanation{
	{"demo-batch", "nightly-report", "report"}: {mainProcess: true, scope: "container", growthClass: "slow_growth", process: "report", pid: 4242},
	{"demo-batch", "thumbnailer", "resize"}:    {scope: "pod", process: "resize", pid: 4343},
	{"demo-payments", "ledger", "app"}:         {mainProcess: true},
}

func TestRenderTable(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	require.NoError(t, renderTable(&b, tableRows, tableWhy))
	want := "" +
		"NAMESPACE      WORKLOAD        CONTAINER  WORKING SET     LIMIT  USED  RESTARTS  OOM KILLS  PROCESS KILLS  WHY (LAST KILL)\n" +
		"demo-batch     nightly-report  report               -  48.0 MiB     -         0          1              0  own limit, slow growth, killed report[4242], suggested limit 80.0 MiB\n" +
		"demo-batch     thumbnailer     resize               -  64.0 MiB     -         0          0            104  pod limit, not PID 1, killed resize[4343]\n" +
		"demo-payments  ledger          app           41.2 MiB  64.0 MiB   64%        12         13              -  limit unknown\n" +
		"demo-shop      frontend        web                  -         -     -         -          -              -  -\n"
	assert.Equal(t, want, trimLines(b.String()))
}

// trimLines drops the padding tabwriter puts before the first cell and after the last.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

func TestRenderTableEmpty(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	require.NoError(t, renderTable(&b, nil, nil))
	assert.Equal(t, "NAMESPACE  WORKLOAD  CONTAINER  WORKING SET  LIMIT  USED  RESTARTS  OOM KILLS  PROCESS KILLS  WHY (LAST KILL)\n", trimLines(b.String()))
}

func TestCountChanges(t *testing.T) {
	t.Parallel()
	before := map[containerKey]float64{
		{"demo-payments", "ledger", "app"}: 12,
	}
	got := countChanges(before, tableRows, 95*time.Second)
	assert.Equal(t, []change{
		{At: 95 * time.Second, Key: containerKey{"demo-batch", "nightly-report", "report"}, From: 0, To: 1},
		{At: 95 * time.Second, Key: containerKey{"demo-payments", "ledger", "app"}, From: 12, To: 13},
	}, got)
	assert.Empty(t, countChanges(oomCounts(tableRows), tableRows, time.Minute), "nothing rose")
	assert.Equal(t, "+1m35s  demo-payments/ledger/app: oom_kills 12 -> 13", got[1].String())
}

func TestOOMCountsSkipsRowsWithoutACount(t *testing.T) {
	t.Parallel()
	assert.Equal(t, map[containerKey]float64{
		{"demo-batch", "nightly-report", "report"}: 1,
		{"demo-batch", "thumbnailer", "resize"}:    0,
		{"demo-payments", "ledger", "app"}:         13,
	}, oomCounts(tableRows))
}

func TestScreen(t *testing.T) {
	t.Parallel()
	changes := make([]change, 10)
	for i := range changes {
		changes[i] = change{At: time.Duration(i) * time.Second, Key: containerKey{"ns", "p", "c"}, From: float64(i), To: float64(i + 1)}
	}
	s := screen{
		Node: "oomwatch-node", Elapsed: 61400 * time.Millisecond, MetricsURL: "http://127.0.0.1:9464/metrics",
		BackendLog: "_build/demo/backend.log", Rows: tableRows, Changes: changes, MaxChanges: 3,
		FirstOOM:    map[containerKey]time.Duration{{"demo-payments", "ledger", "app"}: 7240 * time.Millisecond},
		ClearScreen: true,
	}
	var b strings.Builder
	require.NoError(t, s.render(&b))
	out := b.String()
	assert.True(t, strings.HasPrefix(out, "\033[H\033[2J"), "a terminal is redrawn in place")
	assert.Contains(t, out, "node oomwatch-node, 1m1s since the workload was created")
	assert.Contains(t, out, "counts read from http://127.0.0.1:9464/metrics")
	assert.Contains(t, out, "demo-payments/ledger/app                 +7.2s")
	assert.Contains(t, out, "oom_kills 9 -> 10")
	assert.Contains(t, out, "oom_kills 7 -> 8")
	assert.NotContains(t, out, "oom_kills 6 -> 7", "only the latest MaxChanges")

	s.ClearScreen, s.Rows, s.Err = false, nil, errors.New("connection refused")
	b.Reset()
	require.NoError(t, s.render(&b))
	assert.False(t, strings.HasPrefix(b.String(), "\033"))
	assert.Contains(t, b.String(), "reading the exporter: connection refused")
	assert.Contains(t, b.String(), "(no container reported yet)")
}
