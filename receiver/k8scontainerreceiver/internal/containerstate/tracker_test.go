// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package containerstate

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/slimpod"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
)

// Drain is DrainAfter without the edge.
func (t *Tracker) Drain(now time.Time, emit func(*Pod, *Container, []Point)) {
	t.DrainAfter(now, nil, emit)
}

// Edge is the edge DrainAfter would hand out at at.
func (t *Tracker) Edge(at time.Time) []termination.Key {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.edgeAt(at)
}

// Containers returns how many containers are tracked, deleted pods' included.
func (t *Tracker) Containers() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.pods {
		n += len(p.Containers)
	}
	return n
}

// Pods returns how many pods are tracked, deleted ones not yet drained included.
func (t *Tracker) Pods() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pods)
}

func fullPod(uid string, statuses ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p-" + uid, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status:     corev1.PodStatus{ContainerStatuses: statuses},
	}
}

func podWith(uid string, statuses ...corev1.ContainerStatus) *slimpod.Pod {
	return slimpod.Slim(fullPod(uid, statuses...), nil, nil)
}

type drained struct {
	pod, container string
	points         []Point
}

// drain returns what Drain hands out, without the Since of each point (see
// TestSinceMarksWhatWasSeenHappen).
func drain(tr *Tracker, now time.Time) []drained {
	var out []drained
	tr.Drain(now, func(p *Pod, c *Container, pts []Point) {
		d := drained{string(p.UID), c.Name, append([]Point(nil), pts...)}
		for i := range d.points {
			d.points[i].Since = time.Time{}
		}
		out = append(out, d)
	})
	return out
}

// A point reports news (it carries the time since which the container was watched) when it
// reports what the receiver saw happen; a point that may report history carries none.
func TestSinceMarksWhatWasSeenHappen(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled", "OOMKilled").Statuses()
	since := func(now time.Time) []time.Time {
		var out []time.Time
		tr.Drain(now, func(_ *Pod, _ *Container, pts []Point) {
			for _, p := range pts {
				out = append(out, p.Since)
			}
		})
		return out
	}
	// First sight after an OOM kill: history, then the same as the latest state.
	tr.Upsert(podWith("u1", st[2]), podtest.T0)
	assert.Equal(t, []time.Time{{}}, since(podtest.T0.Add(time.Second)))
	assert.Equal(t, []time.Time{{}}, since(podtest.T0.Add(2*time.Second)))
	// The next kill is seen happen: news, and so is the latest state that repeats it.
	tr.Upsert(podWith("u1", st[3]), podtest.T0.Add(3*time.Second))
	assert.Equal(t, []time.Time{podtest.T0}, since(podtest.T0.Add(4*time.Second)))
	assert.Equal(t, []time.Time{podtest.T0}, since(podtest.T0.Add(5*time.Second)))
}

func pt(instance int64, oom bool, at time.Time) Point {
	return Point{Instance: instance, OOMKilled: oom, Time: at}
}

func TestBaselineThenTerminationsThenSticky(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "Error").Statuses()

	// First sight while instance 1 runs after an OOM kill of instance 0: that kill is history.
	obs := tr.Upsert(podWith("u1", st[2]), podtest.T0.Add(time.Second))
	assert.Equal(t, Observed{HistoryOOMKills: 1}, obs)
	// Two more OOM kills before the scrape, each seen on its own.
	var total Observed
	for i, s := range st[3:7] {
		total.add(tr.Upsert(podWith("u1", s), podtest.T0.Add(time.Duration(2+i)*time.Second)))
	}
	assert.Equal(t, Observed{Terminations: 2, OOMKills: 2}, total)
	got := drain(tr, podtest.T0.Add(10*time.Second))
	require.Len(t, got, 1)
	assert.Equal(t, []Point{
		pt(0, true, podtest.T0.Add(time.Second)),
		pt(1, true, podtest.T0.Add(2*time.Second)),
		pt(2, true, podtest.T0.Add(4*time.Second)),
	}, got[0].points)

	// Nothing new: one point for the latest state.
	got = drain(tr, podtest.T0.Add(20*time.Second))
	assert.Equal(t, []Point{pt(2, true, podtest.T0.Add(20*time.Second))}, got[0].points)

	// A crash that is no OOM kill, then the restart: 0 at the crashed instance, then 0 at the new one.
	tr.Upsert(podWith("u1", st[7]), podtest.T0.Add(21*time.Second))
	tr.Upsert(podWith("u1", st[8]), podtest.T0.Add(22*time.Second))
	got = drain(tr, podtest.T0.Add(30*time.Second))
	assert.Equal(t, []Point{pt(3, false, podtest.T0.Add(21*time.Second))}, got[0].points)
	got = drain(tr, podtest.T0.Add(40*time.Second))
	assert.Equal(t, []Point{pt(4, false, podtest.T0.Add(40*time.Second))}, got[0].points)
}

func TestSameTerminationThroughBothFieldsAndRelist(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled", "OOMKilled").Statuses()
	tr.Upsert(podWith("u1", st[0]), podtest.T0)
	// state.terminated, then lastState.terminated after the restart, then the same status
	// again from a relist, then the next kill with the previous one still in lastState.
	var total Observed
	for i, s := range []corev1.ContainerStatus{st[1], st[2], st[2], st[1], st[3], st[3]} {
		total.add(tr.Upsert(podWith("u1", s), podtest.T0.Add(time.Duration(i+1)*time.Second)))
	}
	assert.Equal(t, Observed{Terminations: 2, OOMKills: 2}, total)
	got := drain(tr, podtest.T0.Add(time.Minute))
	assert.Equal(t, []Point{
		pt(0, false, podtest.T0),
		pt(0, true, podtest.T0.Add(time.Second)),
		pt(1, true, podtest.T0.Add(5*time.Second)),
	}, got[0].points)
}

func TestTimestampsStrictlyIncrease(t *testing.T) {
	t.Parallel()
	tr := New(16)
	// Both terminations appear in one update, at the same wall-clock time as the first sight.
	st := podtest.NewLife("hog", "OOMKilled", "OOMKilled").Statuses()
	tr.Upsert(podWith("u1", st[0]), podtest.T0)
	tr.Upsert(podWith("u1", st[3]), podtest.T0)
	got := drain(tr, podtest.T0)
	assert.Equal(t, []Point{
		pt(0, false, podtest.T0),
		pt(0, true, podtest.T0.Add(1)),
		pt(1, true, podtest.T0.Add(2)),
	}, got[0].points)
	// A scrape whose clock is behind still moves forward.
	got = drain(tr, podtest.T0.Add(-time.Hour))
	assert.Equal(t, []Point{pt(1, true, podtest.T0.Add(3))}, got[0].points)
}

func TestRestartPolicyNeverAndInitContainer(t *testing.T) {
	t.Parallel()
	tr := New(16)
	pod := fullPod("u1")
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
	}}}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	tr.Upsert(slimpod.Slim(pod, nil, nil), podtest.T0)

	done := pod.DeepCopy()
	done.Status.InitContainerStatuses[0].State = corev1.ContainerState{Terminated: podtest.NewLife("init", "OOMKilled").Ended(0)}
	obs := tr.Upsert(slimpod.Slim(done, nil, nil), podtest.T0.Add(time.Second))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, obs)
	got := drain(tr, podtest.T0.Add(2*time.Second))
	require.Len(t, got, 1)
	assert.Equal(t, "init", got[0].container)
	assert.Equal(t, []Point{pt(0, false, podtest.T0), pt(0, true, podtest.T0.Add(time.Second))}, got[0].points)
	got = drain(tr, podtest.T0.Add(3*time.Second))
	assert.Equal(t, []Point{pt(0, true, podtest.T0.Add(3*time.Second))}, got[0].points)
}

func TestFirstSightOfAnOOMKilledContainer(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "OOMKilled").Statuses()
	tr.Upsert(podWith("u1", st[7]), podtest.T0)
	got := drain(tr, podtest.T0.Add(time.Second))
	// The latest termination (instance 3, in state.terminated) was an OOM kill.
	assert.Equal(t, []Point{pt(3, true, podtest.T0)}, got[0].points)
}

func TestPodRecreatedWithTheSameName(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled").Statuses()
	old := podWith("u1", st[2])
	tr.Upsert(old, podtest.T0)
	drain(tr, podtest.T0.Add(time.Second))
	tr.Delete(old, podtest.T0.Add(2*time.Second))
	assert.Equal(t, 0, tr.Pods())

	again := podWith("u2", st[0])
	again.Name = old.Name
	tr.Upsert(again, podtest.T0.Add(3*time.Second))
	got := drain(tr, podtest.T0.Add(4*time.Second))
	require.Len(t, got, 1)
	assert.Equal(t, "u2", got[0].pod)
	assert.Equal(t, []Point{pt(0, false, podtest.T0.Add(3*time.Second))}, got[0].points)
}

func TestDeletedPodReportsItsLastTerminationThenLeavesNoState(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled").Statuses()
	tr.Upsert(podWith("u1", st[0]), podtest.T0)
	drain(tr, podtest.T0.Add(time.Second))
	// The pod is OOM-killed and deleted before the next scrape; the delete carries the kill.
	obs := tr.Delete(podWith("u1", st[1]), podtest.T0.Add(2*time.Second))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, obs)
	assert.Equal(t, 1, tr.Pods())
	got := drain(tr, podtest.T0.Add(3*time.Second))
	assert.Equal(t, []Point{pt(0, true, podtest.T0.Add(2*time.Second))}, got[0].points)
	assert.Equal(t, 0, tr.Pods())
	assert.Equal(t, 0, tr.Containers())
	assert.Empty(t, drain(tr, podtest.T0.Add(4*time.Second)))
}

func TestPendingIsBounded(t *testing.T) {
	t.Parallel()
	tr := New(3)
	reasons := make([]string, 10)
	for i := range reasons {
		reasons[i] = "OOMKilled"
	}
	st := podtest.NewLife("hog", reasons...).Statuses()
	var total Observed
	for i, s := range st {
		total.add(tr.Upsert(podWith("u1", s), podtest.T0.Add(time.Duration(i)*time.Second)))
	}
	// Baseline plus 10 kills, 3 kept: the newest.
	assert.Equal(t, Observed{Terminations: 10, OOMKills: 10, Dropped: 8}, total)
	got := drain(tr, podtest.T0.Add(time.Minute))
	require.Len(t, got[0].points, 3)
	assert.Equal(t, []int64{7, 8, 9}, []int64{got[0].points[0].Instance, got[0].points[1].Instance, got[0].points[2].Instance})
}

func TestMemoryPrefersAppliedResources(t *testing.T) {
	t.Parallel()
	tr := New(4)
	pod := fullPod("u1", corev1.ContainerStatus{Name: "app", Resources: &corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}})
	pod.Spec.Containers = []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
	}}}
	tr.Upsert(slimpod.Slim(pod, nil, nil), podtest.T0)
	tr.Drain(podtest.T0, func(_ *Pod, c *Container, _ []Point) {
		assert.Equal(t, int64(128<<20), c.MemoryLimit)
		assert.Equal(t, int64(32<<20), c.MemoryRequest)
	})
}

// FuzzTrackerAgainstModel replays a container's life with updates dropped (merged by the
// API server), repeated (relists) and scrapes in between, and checks against a model: the
// OOM kills counted from the points, one per instance flagged 1 after the baseline, are the
// kills that showed up in a delivered status and were not visible at first sight; the
// points of the container strictly increase in time.
func FuzzTrackerAgainstModel(f *testing.F) {
	f.Add(uint64(0b1011), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint64(0xffff), []byte{2, 2, 2, 9, 9, 0, 1})
	f.Add(uint64(0), []byte{17, 33, 65, 3})
	f.Fuzz(func(t *testing.T, ooms uint64, script []byte) {
		if len(script) > 64 {
			script = script[:64]
		}
		reasons := make([]string, 12)
		for i := range reasons {
			reasons[i] = "Error"
			if ooms&(1<<i) != 0 {
				reasons[i] = "OOMKilled"
			}
		}
		st := podtest.NewLife("c", reasons...).Statuses()
		tr := New(1024)
		now := podtest.T0

		var first map[string]bool
		seen := map[string]bool{}
		expected := map[int64]bool{}
		counted := map[int64]bool{}
		var baseline *Point
		var last time.Time
		// killed counts the kill records handed out per instance: each kill once.
		killed := map[int64]int{}
		next := 0
		for _, op := range script {
			now = now.Add(time.Duration(op%3) * time.Millisecond)
			switch {
			case op&0x80 != 0: // scrape
				tr.Drain(now, func(_ *Pod, c *Container, pts []Point) {
					for _, k := range c.Kills() {
						killed[k.Instance]++
					}
					for _, p := range pts {
						if !p.Time.After(last) {
							t.Fatalf("point at %v not after %v", p.Time, last)
						}
						last = p.Time
						if baseline == nil {
							b := p
							baseline = &b
							continue
						}
						if p.OOMKilled && (!baseline.OOMKilled || p.Instance != baseline.Instance) {
							counted[p.Instance] = true
						}
					}
				})
			default: // deliver a status, skipping some, or repeating the last one
				next = min(next+int(op&3), len(st)-1)
				s := st[next]
				tr.Upsert(podWith("u", s), now)
				visible := map[string]bool{}
				for _, term := range []*corev1.ContainerStateTerminated{s.State.Terminated, s.LastTerminationState.Terminated} {
					if term != nil {
						visible[term.ContainerID] = true
					}
				}
				if first == nil {
					first = visible
				}
				for id := range visible {
					if !first[id] && !seen[id] {
						var run int64
						_, _ = fmt.Sscanf(id, "containerd://c-%d", &run)
						if reasons[run] == "OOMKilled" {
							expected[run] = true
						}
					}
					seen[id] = true
				}
			}
		}
		// A final scrape flushes what is pending.
		tr.Drain(now.Add(time.Second), func(_ *Pod, c *Container, pts []Point) {
			for _, k := range c.Kills() {
				killed[k.Instance]++
			}
			for _, p := range pts {
				if baseline == nil {
					b := p
					baseline = &b
					continue
				}
				if p.OOMKilled && (!baseline.OOMKilled || p.Instance != baseline.Instance) {
					counted[p.Instance] = true
				}
			}
		})
		if len(expected) != len(counted) {
			t.Fatalf("counted OOM kills at %v, the statuses showed new ones at %v", counted, expected)
		}
		for run := range expected {
			if !counted[run] {
				t.Fatalf("OOM kill of instance %d not counted (counted %v)", run, counted)
			}
			if killed[run] != 1 {
				t.Fatalf("OOM kill of instance %d had %d kill records, want 1 (all: %v)", run, killed[run], killed)
			}
		}
		if len(killed) != len(expected) {
			t.Fatalf("kill records for instances %v, the statuses showed new kills at %v", killed, expected)
		}
	})
}

// TestKillsAreTheNewsOnly: a kill record for each OOM kill seen happen, with the details of the
// killed instance, once; none for one taken as history.
func TestKillsAreTheNewsOnly(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled", "Error", "OOMKilled").Statuses()
	kills := func(now time.Time) []int64 {
		var out []int64
		tr.Drain(now, func(_ *Pod, c *Container, _ []Point) {
			for _, k := range c.Kills() {
				assert.Equal(t, "OOMKilled", k.Reason)
				assert.Equal(t, fmt.Sprintf("containerd://hog-%d", k.Instance), k.ContainerID)
				assert.Equal(t, podtest.T0.Add(time.Duration(k.Instance)*time.Minute+30*time.Second), k.FinishedAt)
				out = append(out, k.Instance)
			}
		})
		return out
	}
	tr.Upsert(podWith("u1", st[2]), podtest.T0) // instance 0's kill is history
	assert.Empty(t, kills(podtest.T0.Add(time.Second)))
	for i, s := range st[3:] {
		tr.Upsert(podWith("u1", s), podtest.T0.Add(time.Duration(2+i)*time.Second))
	}
	assert.Equal(t, []int64{2}, kills(podtest.T0.Add(10*time.Second)))
	tr.Upsert(podWith("u1", st[len(st)-1]), podtest.T0.Add(11*time.Second)) // a relist repeats it
	assert.Empty(t, kills(podtest.T0.Add(20*time.Second)))
}

// TestContainerWhoseFirstStatusIsItsOOMKill: the pod is watched from its creation, and the first
// status that names the container already shows it OOM-killed (a fast kill, restartPolicy:
// Never). That kill happened while the pod was watched: a baseline 0 comes first, then the kill.
func TestContainerWhoseFirstStatusIsItsOOMKill(t *testing.T) {
	t.Parallel()
	tr := New(16)
	tr.Upsert(podWith("u1"), podtest.T0)
	st := podtest.NewLife("hog", "OOMKilled").Statuses()
	obs := tr.Upsert(podWith("u1", st[1]), podtest.T0.Add(time.Second))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, obs)
	got := drain(tr, podtest.T0.Add(2*time.Second))
	require.Len(t, got, 1)
	assert.Equal(t, []Point{pt(0, false, podtest.T0.Add(time.Second)), pt(0, true, podtest.T0.Add(time.Second+time.Nanosecond))}, got[0].points)
}

// Instances that ended while no status showed their termination are reported with an unknown
// outcome, in instance order before what was seen, and only once.
func TestUnseenEndsAreReportedAsUnknown(t *testing.T) {
	t.Parallel()
	tr := New(16)
	hog := podtest.NewLife("hog", "Error", "OOMKilled", "Error", "Error", "OOMKilled")
	running := func(run int32, id string, last *corev1.ContainerStateTerminated) corev1.ContainerStatus {
		return corev1.ContainerStatus{
			Name: "hog", RestartCount: run, ContainerID: id,
			State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			LastTerminationState: corev1.ContainerState{Terminated: last},
		}
	}
	tr.Upsert(podWith("u1", running(0, "containerd://hog-0", nil)), podtest.T0)
	drain(tr, podtest.T0)

	// Instance 0 ended unseen; instance 1's OOM kill is in lastState while instance 2 runs.
	obs := tr.Upsert(podWith("u1", running(2, "containerd://hog-2", hog.Ended(1))), podtest.T0.Add(time.Second))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1, Unseen: 1}, obs)
	got := drain(tr, podtest.T0.Add(2*time.Second))
	assert.Equal(t, []Point{
		{Instance: 0, Unknown: true, Time: podtest.T0.Add(time.Second)},
		pt(1, true, podtest.T0.Add(time.Second+1)),
	}, got[0].points)

	// The back-off form of instance 4 after a jump: instance 2 and 3 ended unseen.
	backoff := corev1.ContainerStatus{
		Name: "hog", RestartCount: 4, ContainerID: "containerd://hog-4",
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: hog.Ended(4)},
	}
	obs = tr.Upsert(podWith("u1", backoff), podtest.T0.Add(3*time.Second))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1, Unseen: 2}, obs)
	// The same status again, and the restart that follows, report nothing new.
	obs = tr.Upsert(podWith("u1", backoff), podtest.T0.Add(4*time.Second))
	assert.Equal(t, Observed{}, obs)
	obs = tr.Upsert(podWith("u1", running(5, "containerd://hog-5", hog.Ended(4))), podtest.T0.Add(5*time.Second))
	assert.Equal(t, Observed{}, obs)
	got = drain(tr, podtest.T0.Add(6*time.Second))
	assert.Equal(t, []Point{
		{Instance: 2, Unknown: true, Time: podtest.T0.Add(3 * time.Second)},
		{Instance: 3, Unknown: true, Time: podtest.T0.Add(3*time.Second + 1)},
		pt(4, true, podtest.T0.Add(3*time.Second+2)),
	}, got[0].points)
}

// End times have a second's precision. A termination that ends in the second of the horizon, but
// after the earlier run looked, is news; one that run knew (its edge) is not; without an edge the
// second counts as before the horizon.
func TestHorizonSecond(t *testing.T) {
	t.Parallel()
	st := podtest.NewLife("hog", "OOMKilled").Statuses()
	ended := st[2] // instance 0 ended at T0+30s, in lastState
	horizon := podtest.T0.Add(30*time.Second + 459*time.Millisecond)
	for name, tc := range map[string]struct {
		edge []termination.Key
		news bool
	}{
		"ended after the look, in its second": {edge: []termination.Key{}, news: true},
		"known to the earlier run":            {edge: []termination.Key{{ContainerID: "containerd://hog-0"}}, news: false},
		"no edge recorded":                    {edge: nil, news: false},
	} {
		t.Run(name, func(t *testing.T) {
			tr := New(16)
			tr.SetHorizon(horizon, tc.edge)
			obs := tr.Upsert(podWith("u1", ended), podtest.T0.Add(time.Minute))
			assert.Equal(t, tc.news, obs.OOMKills == 1, "%+v", obs)
			assert.Equal(t, !tc.news, obs.HistoryOOMKills == 1, "%+v", obs)
		})
	}
}

func TestEdgeIsWhatEndedInTheSecond(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled", "OOMKilled").Statuses()
	tr.Upsert(podWith("u1", st[4]), podtest.T0.Add(2*time.Minute)) // instance 1 ended at T0+1m30s
	assert.Equal(t, []termination.Key{{ContainerID: "containerd://hog-1"}}, tr.Edge(podtest.T0.Add(90*time.Second+300*time.Millisecond)))
	assert.Equal(t, []termination.Key{}, tr.Edge(podtest.T0.Add(91*time.Second)))
}
