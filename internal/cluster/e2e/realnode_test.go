// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
)

// TestRealNodeOOMKillsCounted: a container the kernel OOM-kills again and again (through the
// kubelet's back-off) is counted once per kill, each count reaching the backend within reportLag
// (derived from the collection interval) of the status update; its stats come from the kubelet.
func TestRealNodeOOMKillsCounted(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-real")
	a := startAgent(t, agentOptions{node: s.realNode})

	pod := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil, leaker("app"))
	kills := oomTimes(t, ns, "leaky", "app")
	uid := string(pod.UID)
	for k := 1; k <= 3; k++ {
		var visible time.Time
		select {
		case visible = <-kills:
		case <-time.After(90 * time.Second):
			t.Fatalf("OOM kill %d not seen in the pod status", k)
		}
		p := a.waitOOMs(uid, "app", float64(k), reportLag+slack)
		lag := p.Received.Sub(visible)
		t.Logf("OOM kill %d: visible in the status at %s, count %d at the backend %s later", k, visible.Format("15:04:05.000"), k, lag.Round(time.Millisecond))
		assert.LessOrEqual(t, lag, reportLag, "kill %d counted too late", k)
	}
	// No count beyond the kills the API server shows.
	p := waitStatus(t, ns, "leaky", time.Second, func(*corev1.Pod) bool { return true })
	st, err := status(p, "app")
	require.NoError(t, err)
	latest, ok := a.ooms(uid, "app")
	require.True(t, ok)
	assert.LessOrEqual(t, latest.Value, float64(st.RestartCount+1))

	// Stats from /stats/summary for that container, and its utilization of the 64Mi limit. Not
	// only the latest point: for about a second after a kill the Summary still lists the dead
	// instance with what is left of it (0 B at the end), and in back-off it lists none.
	match := map[string]string{"k8s.pod.uid": uid, "k8s.container.name": "app"}
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(a.sink.Points("container.memory.working_set", match), func(p otlpsink.Point) bool { return p.Value > 0 }) &&
			slices.ContainsFunc(a.sink.Points("k8s.container.memory_limit_utilization", match), func(p otlpsink.Point) bool { return p.Value > 0 && p.Value <= 1.1 })
	}, 60*time.Second, 200*time.Millisecond, "no working set and limit utilization for the leaking container")
}

// TestRealNodeErrorExitNotCounted: a container that exits with an error, again and again, is
// not an OOM kill.
func TestRealNodeErrorExitNotCounted(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-exit")
	a := startAgent(t, agentOptions{node: s.realNode})
	pod := createPod(t, ns, "crashy", s.realNode, corev1.RestartPolicyAlways, nil,
		workload("app", "64Mi", map[string]string{"WORKLOAD_MODE": "exit", "WORKLOAD_EXIT_AFTER": "500ms", "WORKLOAD_EXIT_CODE": "1"}))
	waitStatus(t, ns, "crashy", 90*time.Second, func(p *corev1.Pod) bool {
		st, err := status(p, "app")
		return err == nil && st.RestartCount >= 2
	})
	// The scrape after the second restart was visible, and one more.
	p := a.waitReports(string(pod.UID), "app", time.Now(), 2)
	assert.Zero(t, p.Value)
}

// TestRealNodeRestartNeverAndInitContainer: an OOM kill of a container that is never restarted
// (it stays in state.terminated, restart count 0), and of an init container.
func TestRealNodeRestartNeverAndInitContainer(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-never")
	a := startAgent(t, agentOptions{node: s.realNode})
	once := createPod(t, ns, "once", s.realNode, corev1.RestartPolicyNever, nil, leaker("app"))
	initPod := createPod(t, ns, "init-oom", s.realNode, corev1.RestartPolicyNever,
		[]corev1.Container{leaker("setup")}, workload("app", "64Mi", nil))
	a.waitOOMs(string(once.UID), "app", 1, 90*time.Second)
	a.waitOOMs(string(initPod.UID), "setup", 1, 90*time.Second)
	// Nothing more happens to either: the counts stay over the next scrapes.
	now := time.Now()
	p := a.waitReports(string(once.UID), "app", now, 2)
	assert.Equal(t, 1.0, p.Value)
	p = a.waitReports(string(initPod.UID), "setup", now, 2)
	assert.Equal(t, 1.0, p.Value)
}

// TestRealNodePodRecreatedWithTheSameName: a pod deleted and created again under its name is a
// second series (new UID, new start), counted from zero.
func TestRealNodePodRecreatedWithTheSameName(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-recreate")
	a := startAgent(t, agentOptions{node: s.realNode})
	first := createPod(t, ns, "web", s.realNode, corev1.RestartPolicyNever, nil, leaker("app"))
	p1 := a.waitOOMs(string(first.UID), "app", 1, 90*time.Second)
	deletePod(t, ns, "web")
	second := createPod(t, ns, "web", s.realNode, corev1.RestartPolicyNever, nil, leaker("app"))
	require.NotEqual(t, first.UID, second.UID)
	p2 := a.waitOOMs(string(second.UID), "app", 1, 90*time.Second)
	assert.True(t, p2.Start.After(p1.Start), "the second series starts anew")
	assert.Equal(t, "web", p2.Resource["k8s.pod.name"])
	p, _ := a.ooms(string(first.UID), "app")
	assert.Equal(t, 1.0, p.Value, "the first series keeps its count")
}

// TestRealNodeKillWhileTheCollectorIsDown: the collector, with file_storage, stops cleanly while
// a container runs; the kernel OOM-kills the container while no collector runs; the collector
// starts again while the kubelet shows the back-off form (state.waiting, the killed container in
// lastState under the status' own container ID and restart count). The kill counts once: the
// count is the number of kills the API server shows, no false alarm, none missed.
func TestRealNodeKillWhileTheCollectorIsDown(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-down")
	a := startAgent(t, agentOptions{node: s.realNode, storage: true, name: "down"})
	pod := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil, leaker("app"))
	uid := string(pod.UID)
	a.waitOOMs(uid, "app", 2, 180*time.Second)

	require.NoError(t, a.stop())
	before, ok := a.ooms(uid, "app")
	require.True(t, ok)
	// With no collector running: an instance runs, is OOM-killed and waits in back-off.
	running := waitStatus(t, ns, "leaky", 180*time.Second, func(p *corev1.Pod) bool {
		st, err := status(p, "app")
		return err == nil && st.State.Running != nil
	})
	was, err := status(running, "app")
	require.NoError(t, err)
	// The kubelet shows the end of that instance in the back-off form when it syncs the pod
	// during the back-off; else as state.terminated, or already in lastState of the next one.
	// The back-off form is waited for a while, then any of them will do.
	backoffForm := func(st corev1.ContainerStatus) bool {
		last := st.LastTerminationState.Terminated
		return st.State.Waiting != nil && last != nil && last.Reason == "OOMKilled" &&
			last.ContainerID == st.ContainerID && st.RestartCount == was.RestartCount
	}
	deadline := time.Now().Add(90 * time.Second)
	ended := waitStatus(t, ns, "leaky", 240*time.Second, func(p *corev1.Pod) bool {
		st, err := status(p, "app")
		if err != nil {
			return false
		}
		if backoffForm(st) {
			return true
		}
		return time.Now().After(deadline) && (st.RestartCount > was.RestartCount || st.State.Terminated != nil)
	})
	st, err := status(ended, "app")
	require.NoError(t, err)
	t.Logf("while stopped: instance %d ran and was OOM-killed; restarting with restart count %d, back-off form: %v",
		was.RestartCount, st.RestartCount, backoffForm(st))
	a.start()
	if backoffForm(st) {
		// The form of the case: the one kill while down counts, exactly.
		a.waitOOMs(uid, "app", before.Value+1, scrapes(3))
	}
	// Never more than the API server shows; never less than what it still lets one see: the
	// kills counted before the stop and those of instances since whose end a status shows
	// (an instance whose end no status showed is unattributed, see docs/counting.md).
	p := a.waitReports(uid, "app", time.Now(), 2)
	now, err := status(waitStatus(t, ns, "leaky", time.Second, func(*corev1.Pod) bool { return true }), "app")
	require.NoError(t, err)
	visible := 0.0
	for _, term := range []*corev1.ContainerStateTerminated{now.State.Terminated, now.LastTerminationState.Terminated} {
		if term != nil && term.Reason == "OOMKilled" {
			visible++
		}
	}
	assert.LessOrEqual(t, p.Value, killsShown(t, ns), "no false alarm")
	assert.GreaterOrEqual(t, p.Value, min(before.Value+visible, killsShown(t, ns)), "no visible kill missed")
}

// killsShown is how many OOM kills the status of leaky/app shows, for a container whose every
// run is OOM-killed: each restart followed one, and the current instance's too once it ended.
func killsShown(t *testing.T, ns string) float64 {
	t.Helper()
	p := waitStatus(t, ns, "leaky", time.Second, func(*corev1.Pod) bool { return true })
	st, err := status(p, "app")
	require.NoError(t, err)
	if st.State.Running != nil {
		return float64(st.RestartCount)
	}
	return float64(st.RestartCount + 1)
}
