// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

// TestCollectorKilledAndRestarted: with file_storage, a collector killed by SIGKILL comes back
// with the same StartTimestamp and count, and counts on without counting anything twice.
// Without storage the restart is a visible reset (a new StartTimestamp) and no false increase.
func TestCollectorKilledAndRestarted(t *testing.T) {
	for _, withStorage := range []bool{true, false} {
		name := map[bool]string{true: "file_storage", false: "no_storage"}[withStorage]
		t.Run(name, func(t *testing.T) {
			ns := namespace(t, "e2e-kill-"+strings.ReplaceAll(name, "_", "-"))
			a := startAgent(t, agentOptions{node: standinNode, kubelet: "off", storage: withStorage, name: name})
			pod := standinPod(t, ns, "victim")
			uid := string(pod.UID)
			pod = writeStatus(t, pod, running("app", 0, ""))
			pod = writeStatus(t, pod, ended("app", 0, "OOMKilled", ""))
			pod = writeStatus(t, pod, running("app", 1, "OOMKilled"))
			before := a.waitOOMs(uid, "app", 1, 30*time.Second)
			if withStorage {
				// Killed after a checkpoint holding the count (a kill at any moment is
				// TestPrometheusCountSurvivesSIGKILL's).
				a.waitSaved(before.Received)
			}

			require.NoError(t, a.proc.Kill())
			restarted := time.Now()
			a.start()
			// The restarted collector reports the container at first sight: instance 0's
			// OOM kill, already counted, is history. Two reports: its first sight and one
			// more scrape.
			after := a.waitReports(uid, "app", restarted, 2)
			if withStorage {
				assert.Equal(t, before.Start, after.Start, "the series continues")
				assert.Equal(t, 1.0, after.Value)
			} else {
				assert.True(t, after.Start.After(before.Start), "a visible reset")
				assert.Zero(t, after.Value, "no false increase")
			}
			pod = writeStatus(t, pod, ended("app", 1, "OOMKilled", "OOMKilled"))
			writeStatus(t, pod, running("app", 2, "OOMKilled"))
			want := map[bool]float64{true: 2, false: 1}[withStorage]
			a.waitOOMs(uid, "app", want, scrapes(1))
		})
	}
}

// TestBackendDownTotalsArriveWhenBack: while the backend is down the exporter's retries and
// queue give up on some batches; the next batches carry the totals.
func TestBackendDownTotalsArriveWhenBack(t *testing.T) {
	ns := namespace(t, "e2e-backend")
	a := startAgent(t, agentOptions{node: standinNode, kubelet: "off"})
	pod := standinPod(t, ns, "app")
	uid := string(pod.UID)
	pod = writeStatus(t, pod, running("app", 0, ""))
	a.waitOOMs(uid, "app", 0, 30*time.Second)

	require.NoError(t, a.sink.Stop(context.Background()))
	counted := selfValue(t, a, "otelcol_oom_counter_increments")
	for i := range int32(3) {
		pod = writeStatus(t, pod, ended("app", i, "OOMKilled", "OOMKilled"))
		pod = writeStatus(t, pod, running("app", i+1, "OOMKilled"))
		// Each kill in its own scrape: wait until the processor counted it, with the
		// backend down.
		require.Eventually(t, func() bool {
			return selfValue(t, a, "otelcol_oom_counter_increments") >= counted+float64(i+1)
		}, scrapes(1), 50*time.Millisecond, "OOM kill %d not counted by the processor", i+1)
	}
	// Batches were given up on while the backend was away.
	require.Eventually(t, func() bool {
		return selfValue(t, a, "otelcol_exporter_send_failed_metric_points") > 0
	}, scrapes(2), 100*time.Millisecond, "no batch given up on: %s", selfMetric(t, a, "otelcol_exporter_send_failed_metric_points"))
	require.NoError(t, a.sink.Start(context.Background()))
	a.waitOOMs(uid, "app", 3, 30*time.Second)
}

// TestKubeletFailuresKeepCountsFlowing: a kubelet that answers garbage, then errors, then not at
// all costs the stats only: OOM kills keep being counted, and the collector's own telemetry
// counts the kubelet errors.
func TestKubeletFailuresKeepCountsFlowing(t *testing.T) {
	ns := namespace(t, "e2e-kubelet")
	kl := kubelettest.New(t)
	kl.SetSummary(kubelettest.Summary(standinNode))
	a := startAgent(t, agentOptions{node: standinNode, kubelet: kl.Endpoint()})
	pod := standinPod(t, ns, "app")
	uid := string(pod.UID)
	pod = writeStatus(t, pod, running("app", 0, ""))
	a.waitOOMs(uid, "app", 0, 30*time.Second)

	stats := func(u kubelettest.Usage) *v1alpha1.Summary {
		now := time.Now()
		return kubelettest.Summary(standinNode, kubelettest.Pod(ns, "app", uid, standinStart, kubelettest.Container("app", standinStart, now, u)))
	}
	kl.SetSummary(stats(kubelettest.Usage{WorkingSet: 40 << 20}))
	match := map[string]string{"k8s.pod.uid": uid, "k8s.container.name": "app"}
	require.Eventually(t, func() bool {
		p, ok := a.sink.Latest("container.memory.working_set", match)
		return ok && p.Value == 40<<20
	}, 30*time.Second, 100*time.Millisecond, "stats from the kubelet")

	failures := []func(){
		func() { kl.SetGarbage([]byte("<html>not a summary</html>")) },
		func() { kl.SetStatus(http.StatusInternalServerError) },
		func() { kl.SetDelay(3 * time.Second) },
	}
	for i, fail := range failures {
		fail()
		pod = writeStatus(t, pod, ended("app", int32(i), "OOMKilled", "OOMKilled"))
		pod = writeStatus(t, pod, running("app", int32(i+1), "OOMKilled"))
		a.waitOOMs(uid, "app", float64(i+1), scrapes(2))
	}
	errs := selfMetric(t, a, "otelcol_k8s_container_kubelet_errors")
	assert.Contains(t, errs, `reason="decode"`)
	assert.Contains(t, errs, `reason="status"`)
	assert.Contains(t, errs, `reason="timeout"`)
}

// selfValue sums the samples of a metric on the collector's own Prometheus endpoint (0 when it
// has none yet).
func selfValue(t *testing.T, a *agent, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, l := range strings.Split(selfMetric(t, a, name), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		require.NoError(t, err, l)
		sum += v
	}
	return sum
}

// selfMetric returns the lines of the collector's own Prometheus endpoint about a metric.
func selfMetric(t *testing.T, a *agent, name string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", a.telem))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
