// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
)

// TestRealNodeOOMKillsCounted: a container the kernel OOM-kills again and again (through the
// kubelet's back-off) is counted once per kill: the backend holds each count in turn, and then
// exactly the kills the API server shows; its stats come from the kubelet. How long each count
// took to reach the backend after the status update is logged, not asserted: on a loaded machine
// it tells more about the machine than about the collector.
func TestRealNodeOOMKillsCounted(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-real")
	a := startAgent(t, agentOptions{node: s.realNode})

	pod := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil, leaker("app"))
	kills := oomTimes(t, ns, "leaky", "app")
	uid := string(pod.UID)
	match := map[string]string{"k8s.pod.uid": uid, "k8s.container.name": "app"}
	for k := 1; k <= 3; k++ {
		var visible time.Time
		select {
		case visible = <-kills:
		case <-time.After(90 * time.Second):
			t.Fatalf("OOM kill %d not seen in the pod status", k)
		}
		// Any point holding k, not only the latest: the next kill may already be counted
		// when a slow run looks.
		var counted otlpsink.Point
		require.Eventuallyf(t, func() bool {
			points := a.sink.Points("k8s.container.oom_kills", match)
			i := slices.IndexFunc(points, func(p otlpsink.Point) bool { return p.Value == float64(k) })
			if i < 0 {
				return false
			}
			counted = points[i]
			return true
		}, time.Minute, 100*time.Millisecond, "k8s.container.oom_kills of leaky/app never held %d", k)
		t.Logf("OOM kill %d: visible in the status at %s, count %d at the backend %s later", k, visible.Format("15:04:05.000"), k, counted.Received.Sub(visible).Round(time.Millisecond))
	}
	shown, p := settledCount(t, a, ns, uid)
	assert.Equal(t, shown, p.Value, "k8s.container.oom_kills of leaky/app against the OOM kills its status shows")

	// Stats from /stats/summary for that container, and its utilization of the 64Mi limit. Not
	// only the latest point: for about a second after a kill the Summary still lists the dead
	// instance with what is left of it (0 B at the end), and in back-off it lists none.
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
// lastState under the status' own container ID and restart count), or, when the kubelet skips
// that form, once the next instance runs with the kill in lastState. Which form the collector
// first sees, that one or the running form of the next instance (which may replace the back-off
// form while the collector starts), is timing; in each the kill while down counts once
// (docs/counting.md): the count is exactly the number of kills the API server shows, no false
// alarm, none missed. The container leaks slowly (64 MiB in about 6 s): the next instance lives
// long enough for the collector to look before that instance's kill hides the one while down.
func TestRealNodeKillWhileTheCollectorIsDown(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-down")
	a := startAgent(t, agentOptions{node: s.realNode, storage: true, name: "down"})
	pod := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil,
		workload("app", "64Mi", map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_INTERVAL": "400ms"}))
	uid := string(pod.UID)
	a.waitOOMs(uid, "app", 2, 180*time.Second)

	require.NoError(t, a.stop())
	before, ok := a.ooms(uid, "app")
	require.True(t, ok)
	// Instance n, the first whose end no collector reported, runs and is OOM-killed while no
	// collector runs.
	n := int32(before.Value)
	backoffForm := func(st corev1.ContainerStatus) bool {
		last := st.LastTerminationState.Terminated
		return st.RestartCount == n && st.State.Waiting != nil && last != nil && last.Reason == "OOMKilled" &&
			last.ContainerID == st.ContainerID
	}
	// The kubelet shows the back-off form when it syncs the pod during the back-off (it first
	// shows state.terminated); when it does not, the next instance starts with the end of
	// instance n in lastState. The collector starts at the first of the two.
	ended := waitStatus(t, ns, "leaky", 240*time.Second, func(p *corev1.Pod) bool {
		st, err := status(p, "app")
		return err == nil && (backoffForm(st) || st.RestartCount > n)
	})
	st, err := status(ended, "app")
	require.NoError(t, err)
	form := "back-off"
	if !backoffForm(st) {
		// The next instance's: its lastState, under another container ID, is instance n's end.
		form = "next instance's"
		last := st.LastTerminationState.Terminated
		require.Truef(t, st.RestartCount == n+1 && last != nil && last.Reason == "OOMKilled" && last.ContainerID != st.ContainerID,
			"the status no longer shows the end of instance %d (restart count %d, state %+v, lastState %+v): more than one instance ended with no collector running",
			n, st.RestartCount, st.State, last)
	}
	t.Logf("while stopped: instance %d was OOM-killed; the collector starts again with the %s form, restart count %d", n, form, st.RestartCount)
	a.start()
	shown, p := settledCount(t, a, ns, uid)
	t.Logf("after the restart: %v kills counted before the stop, %v shown, %v counted", before.Value, shown, p.Value)
	assert.Equal(t, shown, p.Value, "k8s.container.oom_kills after the restart (%s form): the kill while down, and each since, counts once", form)
}

// settledCount returns the OOM kills the status of ns/leaky/app shows and the count of uid's
// k8s.container.oom_kills the collector reported one full scrape after the test read them, from
// a window in which the status showed no new kill: with a kill within the window the two may
// differ by it without either being wrong. Kills come seconds apart, and through the back-off
// tens of seconds, so one of three windows of two scrapes holds none.
func settledCount(t *testing.T, a *agent, ns, uid string) (float64, otlpsink.Point) {
	t.Helper()
	for range 3 {
		shown := killsShown(t, ns)
		p := a.waitReports(uid, "app", time.Now(), 2)
		if killsShown(t, ns) == shown {
			return shown, p
		}
	}
	t.Fatalf("the OOM kills the status of %s/leaky/app shows changed in each of three windows of two scrapes", ns)
	return 0, otlpsink.Point{}
}

// killsShown is how many OOM kills the status of leaky/app shows, for a container whose every
// run is OOM-killed: each restart followed one, and the current instance's too once its end
// shows (state.terminated, or the back-off form: lastState under the status' own container ID).
func killsShown(t *testing.T, ns string) float64 {
	t.Helper()
	p, err := need(t).admin.CoreV1().Pods(ns).Get(context.Background(), "leaky", metav1.GetOptions{})
	require.NoError(t, err)
	st, err := status(p, "app")
	require.NoError(t, err)
	last := st.LastTerminationState.Terminated
	if st.State.Terminated != nil || (st.State.Waiting != nil && last != nil && last.ContainerID == st.ContainerID) {
		return float64(st.RestartCount + 1)
	}
	return float64(st.RestartCount)
}
