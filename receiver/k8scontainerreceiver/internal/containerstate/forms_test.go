// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package containerstate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/slimpod"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
)

// The rarer forms a production node writes: through the status manager, after the runtime lost
// its containers, and for static pods.

func sec(n int) time.Time { return podtest.T0.Add(time.Duration(n) * time.Second) }

// A pod waiting in back-off after an OOM kill is evicted: the status manager's TerminatePod
// writes a made-up state.terminated over the waiting state. No instance ended there: the count
// stays, nothing is unseen, no reset.
func TestEndedInBackOffByTheStatusManager(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog", "Error", "Error", "Error", "Error", "Error", "OOMKilled")
	tr.Upsert(podWith("u1", hog.Running(5)), sec(0))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, tr.Upsert(podWith("u1", hog.Terminated(5)), sec(1)))
	assert.Equal(t, Observed{}, tr.Upsert(podWith("u1", hog.Backoff(5)), sec(2)))
	assert.Equal(t, Observed{}, tr.Upsert(podWith("u1", hog.EndedByKubelet(5)), sec(3)))
	got := drain(tr, sec(4))
	require.Len(t, got, 1)
	assert.Equal(t, []Point{pt(5, false, sec(0)), pt(5, true, sec(1))}, got[0].points)
	assert.Equal(t, []Point{pt(5, true, sec(5))}, drain(tr, sec(5))[0].points)
}

// The runtime lost the running container (node rebooted, runtime state wiped): the kubelet
// writes its default waiting state without a container ID, then starts the next instance with
// the restart count it finds in the container log folder. One instance ended unseen; the
// restart count was not reset.
func TestRuntimeLostTheContainer(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "OOMKilled")
	tr.Upsert(podWith("u1", hog.Running(3)), sec(0))
	assert.Equal(t, Observed{}, tr.Upsert(podWith("u1", hog.RuntimeLost(3)), sec(1)))
	assert.Equal(t, Observed{Unseen: 1}, tr.Upsert(podWith("u1", hog.RunningAlone(4)), sec(2)))
	got := drain(tr, sec(3))
	assert.Equal(t, []Point{pt(2, true, sec(0)), {Instance: 3, Unknown: true, Time: sec(2)}}, got[0].points)
}

// The runtime lost a container whose status showed no earlier termination: the kubelet infers
// that the running instance ended, with ContainerStatusUnknown in lastState and the restart
// count raised. How it ended is not known: unattributed, not a 0.
func TestStatusUnknownIsUnattributed(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog")
	tr.Upsert(podWith("u1", hog.Running(0)), sec(0))
	lost := hog.LostAlone(0)
	assert.Equal(t, Observed{Unseen: 1}, tr.Upsert(podWith("u1", lost), sec(1)))
	got := drain(tr, sec(2))
	assert.Equal(t, []Point{pt(0, false, sec(0)), {Instance: 0, Unknown: true, Time: sec(1)}}, got[0].points)
}

// A made-up end names its instance by the restart count alone. After a reset the same number
// names a new instance: the kubelet's made-up end of the old instance 0 (the runtime lost it),
// then the logs went too, a new instance 0 ran, and the status manager made up its end. That
// one ended too, unseen.
func TestMadeUpEndAfterAReset(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog")
	tr.Upsert(podWith("u1", hog.Running(0)), sec(0))
	lost := hog.LostAlone(0)
	tr.Upsert(podWith("u1", lost), sec(1))
	after := podtest.NewLife("hog-after-reboot")
	again := podtest.Named(after.RunningAlone(0), "hog")
	tr.Upsert(podWith("u1", again), sec(2))
	ended := podtest.EndedByKubelet(again)
	assert.Equal(t, Observed{Unseen: 1}, tr.Upsert(podWith("u1", ended), sec(3)))
	got := drain(tr, sec(4))
	assert.Equal(t, []Point{
		pt(0, false, sec(0)), {Instance: 0, Unknown: true, Time: sec(1)},
		pt(0, false, sec(2)), {Instance: 0, Unknown: true, Time: sec(3)},
	}, got[0].points)
}

// A node reboot that wiped the container logs too: the runtime's default status keeps the old
// restart count, then a new container starts again at 0. The second status is the reset.
func TestRuntimeLostThenRestartCountReset(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog")
	tr.Upsert(podWith("u1", hog.Running(0)), sec(0))
	tr.Upsert(podWith("u1", hog.RuntimeLost(0)), sec(1))
	after := hog.Rebooted()
	tr.Upsert(podWith("u1", podtest.Named(after.Running(0), "hog")), sec(2))
	got := drain(tr, sec(3))
	assert.Equal(t, []Point{pt(0, false, sec(0)), pt(0, false, sec(2))}, got[0].points)
}

// A static pod's mirror pod is deleted and re-created by the kubelet with a new UID and the
// static pod's cached status: an OOM kill long ago is history, on the new pod as on the old.
func TestMirrorPodRecreatedShowsHistory(t *testing.T) {
	t.Parallel()
	etcd := podtest.NewLife("etcd", "OOMKilled")
	for _, statusLater := range []bool{false, true} {
		tr := New(16)
		old := podtest.Mirror(podtest.NewPod("etcd-node-a", "m1", etcd.Running(1)), "static-etcd")
		tr.Upsert(slimpod.Slim(old, nil, nil), sec(0))
		drain(tr, sec(1))
		tr.Delete(slimpod.Slim(old, nil, nil), sec(2))

		again := podtest.Mirror(podtest.NewPod("etcd-node-a", "m2", etcd.Running(1)), "static-etcd")
		var obs Observed
		if statusLater {
			// Created without a status (the API server drops it on create), written next.
			obs.add(tr.UpsertCreated(slimpod.Slim(podtest.WithStatus(again), nil, nil), sec(3)))
			obs.add(tr.Upsert(slimpod.Slim(again, nil, nil), sec(4)))
		} else {
			obs.add(tr.UpsertCreated(slimpod.Slim(again, nil, nil), sec(3)))
		}
		assert.Equal(t, Observed{HistoryOOMKills: 1}, obs, "status written later: %v", statusLater)
		var points []Point
		var runtimeUID string
		tr.Drain(sec(5), func(p *Pod, _ *Container, pts []Point) {
			points = append(points, pts...)
			runtimeUID = string(p.RuntimeUID)
		})
		require.Len(t, points, 1)
		assert.True(t, points[0].Since.IsZero(), "history carries no start")
		assert.Equal(t, "static-etcd", runtimeUID)
	}
}

// containerd marks a container OOMKilled when a child was OOM-killed and PID 1 then exited by
// itself (kubernetes #140718): no container OOM kill, but a kill inside it.
func TestChildKilledThenMainProcessExited(t *testing.T) {
	t.Parallel()
	tr := New(16)
	job := podtest.NewLife("job", "OOMKilled")
	tr.Upsert(podWith("u1", job.Running(0)), sec(0))
	done := job.Terminated(0)
	done.State.Terminated.ExitCode = 0
	assert.Equal(t, Observed{Terminations: 1}, tr.Upsert(podWith("u1", done), sec(1)))
	inner := 0
	record := func(_ Horizon, pending Pending) error {
		pending.InnerKills(func(_ *Pod, _ *Container, k termination.Termination) { inner++ })
		return nil
	}
	require.NoError(t, tr.DrainRecorded(sec(2), record, func(_ *Pod, c *Container, pts []Point) {
		assert.Equal(t, []Point{pt(0, false, sec(0)), pt(0, false, sec(1))}, stripSince(pts))
		assert.Empty(t, c.Kills())
		require.Len(t, c.InnerKills(), 1)
		assert.Equal(t, "containerd://job-0", c.InnerKills()[0].ContainerID)
	}))
	assert.Equal(t, 1, inner, "the record sees the kill inside before the drain hands it out")
}

func stripSince(pts []Point) []Point {
	out := append([]Point(nil), pts...)
	for i := range out {
		out[i].Since = time.Time{}
	}
	return out
}

// Each rule that tells a new count of restarts, and the forms that look like one but are not.
// A reset shows as a 0 at instance 0 after what came before.
func TestEachResetRule(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled")
	after := podtest.NewLife("hog", "Error", "Error").Rebooted()
	named := func(s corev1.ContainerStatus) corev1.ContainerStatus { return podtest.Named(s, "hog") }
	tests := []struct {
		name    string
		first   corev1.ContainerStatus
		then    []corev1.ContainerStatus
		isReset bool
	}{
		{"a lower restart count, a container never seen", hog.Running(2), []corev1.ContainerStatus{named(after.Running(0))}, true},
		{"a lower restart count from a relist of an older status", hog.Running(2), []corev1.ContainerStatus{hog.Running(3), hog.Running(2)}, false},
		{"the same restart count, a container never seen where one was known", hog.Running(0), []corev1.ContainerStatus{named(podtest.NewLife("hog").Rebooted().Running(0))}, true},
		{"the same restart count, no container: the runtime lost it", hog.Running(2), []corev1.ContainerStatus{hog.RuntimeLost(2)}, false},
		{"a second end of an instance that already ended", hog.Running(1), []corev1.ContainerStatus{hog.Terminated(1), named(after.Running(2))}, true},
		{"the same end seen again in lastState", hog.Running(1), []corev1.ContainerStatus{hog.Terminated(1), hog.Running(2)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := New(16)
			tr.Upsert(podWith("u1", tt.first), sec(0))
			drain(tr, sec(1))
			for i, s := range tt.then {
				tr.Upsert(podWith("u1", s), sec(2+i))
			}
			reset := false
			for _, p := range drain(tr, sec(10))[0].points {
				if p.Instance == 0 && !p.OOMKilled && !p.Unknown {
					reset = true
				}
			}
			assert.Equal(t, tt.isReset, reset)
		})
	}
}

// After an instance reported as ended unseen, the latest state is the running instance, not an
// older OOM kill below it: that would read as a new count of restarts.
func TestLatestStateAfterAnUnseenEnd(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "OOMKilled")
	tr.Upsert(podWith("u1", hog.Running(3)), sec(0))
	tr.Upsert(podWith("u1", hog.RuntimeLost(3)), sec(1))
	tr.Upsert(podWith("u1", hog.RunningAlone(4)), sec(2))
	drain(tr, sec(3))
	assert.Equal(t, []Point{pt(4, false, sec(4))}, drain(tr, sec(4))[0].points)
}

// The runtime lost a running container whose status had no lastState: the kubelet makes up its
// end and raises the restart count; the next container runs at that count. No reset: one
// instance ended, how is unknown.
func TestNextContainerAtTheRaisedCount(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog")
	tr.Upsert(podWith("u1", hog.Running(0)), sec(0))
	lost := hog.LostAlone(0)
	tr.Upsert(podWith("u1", lost), sec(1))
	tr.Upsert(podWith("u1", podtest.NewLife("hog", "Error").RunningAlone(1)), sec(2))
	assert.Equal(t, []Point{pt(0, false, sec(0)), {Instance: 0, Unknown: true, Time: sec(1)}}, drain(tr, sec(3))[0].points)
}

// The runtime lost a container waiting in back-off, and the back-off status itself was merged
// away: the kubelet's default status keeps the back-off's lastState without the container ID
// that tells the form. The container was seen running as instance 4: its end is instance 4's.
func TestDefaultStatusAfterAMergedBackOff(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog", "Error", "Error", "Error", "Error", "OOMKilled")
	tr.Upsert(podWith("u1", hog.Running(4)), sec(0))
	lost := hog.BackoffLost(4)
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, tr.Upsert(podWith("u1", lost), sec(1)))
	assert.Equal(t, []Point{pt(4, false, sec(0)), pt(4, true, sec(1))}, drain(tr, sec(2))[0].points)
}

// The status manager ends a pod whose container never ran: no instance ended.
func TestEndedBeforeItEverRan(t *testing.T) {
	t.Parallel()
	tr := New(16)
	waiting := corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}
	tr.Upsert(podWith("u1", waiting), sec(0))
	ended := podtest.EndedByKubelet(waiting)
	assert.Equal(t, Observed{}, tr.Upsert(podWith("u1", ended), sec(1)))
	assert.Equal(t, []Point{pt(0, false, sec(0))}, drain(tr, sec(2))[0].points)
}

// The same, when the receiver saw only the instance before run: its container is not the one
// whose end the default status shows, so that end is the next instance's.
func TestDefaultStatusAfterAnUnseenBackOff(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog", "Error", "OOMKilled")
	tr.Upsert(podWith("u1", hog.Running(0)), sec(0))
	lost := hog.BackoffLost(1)
	tr.Upsert(podWith("u1", lost), sec(1))
	points := drain(tr, sec(2))[0].points
	assert.Equal(t, []Point{pt(0, false, sec(0)), {Instance: 0, Unknown: true, Time: sec(1)}, pt(1, true, sec(1).Add(1))}, points)
}

// After a restart with storage, the default status' lastState ended after the horizon, and the
// earlier run had reported the end of the instance the status names: it is the next one's.
func TestDefaultStatusAfterARestart(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "Error", "OOMKilled")
	lost := hog.BackoffLost(1)
	tr := New(16)
	tr.Resume(Horizon{At: podtest.T0.Add(70 * time.Second), Ended: []termination.Key{}, Reported: []Reported{{PodUID: "u1", Unended: map[string]int64{"hog": 1}}}})
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, tr.Upsert(podWith("u1", lost), podtest.T0.Add(5*time.Minute)))
	tr.Drain(podtest.T0.Add(6*time.Minute), func(_ *Pod, c *Container, _ []Point) {
		require.Len(t, c.Kills(), 1)
		assert.Equal(t, int64(1), c.Kills()[0].Instance)
	})
}

// The runtime lost a container in back-off, then the status manager ended the pod: the made-up
// end over the default status is no second end of the instance the receiver saw end.
func TestEndedByTheStatusManagerAfterTheRuntimeLostIt(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog", "Error", "Error", "Error", "OOMKilled")
	tr.Upsert(podWith("u1", hog.Terminated(3)), sec(0))
	lost := hog.BackoffLost(3)
	assert.Equal(t, Observed{}, tr.Upsert(podWith("u1", lost), sec(1)))
	ended := podtest.EndedByKubelet(lost)
	assert.Equal(t, Observed{}, tr.Upsert(podWith("u1", ended), sec(2)))
	assert.Equal(t, []Point{pt(3, true, sec(0))}, drain(tr, sec(3))[0].points)
}
