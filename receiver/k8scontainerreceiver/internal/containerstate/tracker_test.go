// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package containerstate

import (
	"fmt"
	"strings"
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

// Drain is DrainRecorded without a record.
func (t *Tracker) Drain(now time.Time, emit func(*Pod, *Container, []Point)) {
	_ = t.DrainRecorded(now, nil, emit)
}

// Ended is the Ended of the horizon DrainRecorded would hand out at at.
func (t *Tracker) Ended(at time.Time) []termination.Key {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.endedAt(at)
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

// FuzzTrackerAgainstModel drives a simulated kubelet through the lives of one container and
// hands the tracker some of its statuses: updates dropped (merged by the API server), repeated
// (relists), scrapes in between. A life runs, ends and restarts, waits in back-off, and may be
// ended there by the status manager; a node reboot starts a new life (new containers, the restart
// count again from 0), maybe after the runtime's default status for the lost container; the pod
// may be deleted and re-created under the same name with a new UID.
//
// A model that knows the kubelet's forms but not the tracker's code says which OOM kills are new:
// visible in a delivered status and not visible at the tracker's first sight of that pod, one per
// (pod, life, instance). The points are counted by the processor's rule, per pod UID, and checked:
// each new kill counted once and nothing else, one kill record per counted kill, the points of a
// container strictly increasing in time, and no point of unknown outcome for an instance whose end
// a delivered status showed.
//
// Each byte of script is one event, and time moves on by the byte mod 3 ms. With bit 7 set, a
// scrape. Else bits 4-6 choose:
//   - 4: the node reboots; bit 2: the runtime's default status comes first, if a run was running;
//     bit 3: the status that follows is delivered.
//   - 5: the pod is deleted and re-created under the same name; bits 0-1: how many statuses the
//     new pod went through before the create was delivered; bit 2: created without a status;
//     bit 3: the delete carries the last delivered state rather than the final one.
//   - any other: the kubelet moves on by bits 0-1 statuses (0: the same status again, a relist)
//     and the last is delivered; bit 2: an ended run waits in back-off; bit 3, with bits 4-6 = 3:
//     the status manager ends the pod in back-off.
func FuzzTrackerAgainstModel(f *testing.F) {
	f.Add(uint64(0b1011), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint64(0xffff), []byte{2, 2, 2, 9, 9, 0, 1})
	f.Add(uint64(0), []byte{17, 33, 65, 3})
	// Back-off after an OOM kill, then the next run; and the status manager ending the pod there.
	f.Add(uint64(0b1), []byte{0x30, 0x31, 0x35, 0x80, 0x31, 0x35, 0x30, 0x80})
	f.Add(uint64(0b11), []byte{0x30, 0x31, 0x35, 0x39, 0x80, 0x30, 0x32, 0x80})
	// A node reboot: the runtime's default status for the lost container delivered, then the new
	// life from run 0; and a reboot no delivered status shows, the new life seen further on.
	f.Add(uint64(1<<16|0b11), []byte{0x30, 0x32, 0x80, 0x4c, 0x31, 0x31, 0x80, 0x31})
	f.Add(uint64(1<<17|0b111), []byte{0x32, 0x33, 0x80, 0x40, 0x33, 0x80, 0x31, 0x45, 0x33})
	// The pod re-created with a new UID: created with a status that shows a kill, and created
	// without a status after a delete that carries only the last delivered state.
	f.Add(uint64(1<<16|1<<32|0b1), []byte{0x30, 0x31, 0x80, 0x51, 0x32, 0x80, 0x5c, 0x32, 0x80})

	f.Fuzz(func(t *testing.T, ooms uint64, script []byte) {
		if len(script) > 64 {
			script = script[:64]
		}
		k := newFuzzKubelet(ooms)
		tr := New(1024)
		now := podtest.T0

		var deliveries []fuzzLife            // what each delivery showed: which pod, which life
		tags := map[fuzzPointKey]int{}       // which delivery queued each point
		lastDelivery := map[string]int{}     // per pod UID
		delivered := map[int]*fuzzDelivery{} // per pod, its last delivered state
		history := map[fuzzEnd]bool{}        // ends visible at the first sight of a listed pod
		shown := map[fuzzEnd]bool{}          // ends some delivered status showed
		expected := map[fuzzEnd]bool{}       // the new OOM kills
		ends := map[string]fuzzEnd{}         // container ID of each end shown
		counted := map[fuzzEnd]int{}
		records := map[fuzzEnd]int{}
		series := map[string]*fuzzSeries{}
		last := map[string]time.Time{}
		var log []string // what happened, for the failure message
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("%s\nevents:\n  %s", fmt.Sprintf(format, args...), strings.Join(log, "\n  "))
		}

		deliver := func(call fuzzCall, l fuzzLife, withStatus bool) {
			uid := fuzzUID(l.pod)
			pod := fullPod(uid)
			pod.Name = "p" // every incarnation of the pod has the same name
			if withStatus {
				pod.Status.ContainerStatuses = []corev1.ContainerStatus{l.status()}
			}
			slim := slimpod.Slim(pod, nil, nil)
			switch call {
			case fuzzListed:
				tr.Upsert(slim, now)
			case fuzzCreated:
				tr.UpsertCreated(slim, now)
			case fuzzDeleted:
				tr.Delete(slim, now)
			}
			d := len(deliveries)
			deliveries = append(deliveries, l)
			lastDelivery[uid] = d
			var visible []fuzzEnd
			if withStatus {
				for _, run := range l.shows() {
					visible = append(visible, fuzzEnd{l.pod, l.epoch, run})
				}
			}
			if delivered[l.pod] == nil && call != fuzzCreated {
				// The first sight of a pod listed while it ran: what it shows is history.
				for _, e := range visible {
					history[e] = true
				}
			}
			delivered[l.pod] = &fuzzDelivery{life: l, withStatus: withStatus}
			for _, e := range visible {
				shown[e] = true
				ends[l.life.Ended(e.run).ContainerID] = e
				// A kill no delivered status showed (its statuses merged away, a reboot
				// among them) is no kill to count: docs/counting.md lets it go uncounted,
				// its instance unattributed at most.
				if !history[e] && l.life.Reasons[e.run] == "OOMKilled" {
					expected[e] = true
				}
			}
			for _, p := range fuzzPending(tr, types.UID(uid)) {
				key := fuzzPointKey{uid, p.Time.UnixNano()}
				if _, ok := tags[key]; !ok {
					tags[key] = d
				}
			}
			what := "no status"
			if withStatus {
				what = l.String()
			}
			log = append(log, fmt.Sprintf("%v %s at %v: %s, shows %v", call, uid, now.Sub(podtest.T0), what, visible))
		}

		scrape := func(at time.Time) {
			tr.Drain(at, func(p *Pod, c *Container, pts []Point) {
				uid := string(p.UID)
				log = append(log, fmt.Sprintf("scrape %s at %v: %+v", uid, at.Sub(podtest.T0), pts))
				for _, kill := range c.Kills() {
					e, ok := ends[kill.ContainerID]
					if !ok || !expected[e] {
						fail("kill record of %s (%v), which is no new kill (new: %v)", kill.ContainerID, e, expected)
					}
					if records[e]++; records[e] > 1 {
						fail("a second kill record of %v", e)
					}
				}
				s := series[uid]
				if s == nil {
					s = &fuzzSeries{}
					series[uid] = s
				}
				for _, pt := range pts {
					if !pt.Time.After(last[uid]) {
						fail("point %+v of %s not after %v", pt, uid, last[uid])
					}
					last[uid] = pt.Time
					// A point no delivery queued is the latest state, handed out by a scrape:
					// it is about the pod's last delivered status.
					d, ok := tags[fuzzPointKey{uid, pt.Time.UnixNano()}]
					if !ok {
						d = lastDelivery[uid]
					}
					e := fuzzEnd{deliveries[d].pod, deliveries[d].epoch, int(pt.Instance)}
					if s.apply(pt) {
						if !expected[e] {
							fail("point %+v of %s counts a kill of %v, which is no new kill (new: %v)", pt, uid, e, expected)
						}
						if counted[e]++; counted[e] > 1 {
							fail("point %+v of %s counts the kill of %v a second time", pt, uid, e)
						}
					}
					// Where no delivered status showed an instance's end, a point of unknown
					// outcome is what the tracker should send, though it cannot always tell which
					// count of restarts the instance belonged to (a reboot no delivered status
					// showed): an unattributed instance, which the processor does not count.
					// Where one showed it, the outcome was known.
					if pt.Unknown && shown[e] {
						fail("point %+v of %s: outcome unknown, but a delivered status showed the end of %v", pt, uid, e)
					}
				}
			})
		}

		for _, op := range script {
			now = now.Add(time.Duration(op%3) * time.Millisecond)
			if op&0x80 != 0 {
				scrape(now)
				continue
			}
			steps, bit2, bit3 := int(op&3), op&4 != 0, op&8 != 0
			switch op >> 4 & 7 {
			case 4:
				if k.reboot(bit2) && bit3 {
					deliver(fuzzListed, k.cur, true)
				}
			case 5:
				if old := delivered[k.cur.pod]; old != nil {
					final := fuzzDelivery{life: k.cur, withStatus: true}
					if bit3 {
						// Deleted while the watch was down: the relist's tombstone carries
						// the last state the informer had.
						final = *old
					}
					deliver(fuzzDeleted, final.life, final.withStatus)
				}
				k.recreate()
				k.advance(steps, false, false)
				// Created without a status, the next update writes it.
				deliver(fuzzCreated, k.cur, !bit2)
			default:
				k.advance(steps, bit2, bit3 && op>>4&7 == 3)
				deliver(fuzzListed, k.cur, true)
			}
		}
		// A final scrape flushes what is pending.
		scrape(now.Add(time.Second))

		for e := range expected {
			if counted[e] != 1 {
				fail("OOM kill of %v counted %d times, want 1 (counted: %v)", e, counted[e], counted)
			}
			if records[e] != 1 {
				fail("OOM kill of %v had %d kill records, want 1 (all: %v)", e, records[e], records)
			}
		}
	})
}

// fuzzRuns is how many runs each life of the fuzzed container has; the last one runs on.
const fuzzRuns = 16

// fuzzForm is the form of the status the simulated kubelet writes.
type fuzzForm uint8

const (
	fuzzRunning fuzzForm = iota
	fuzzTerminated
	fuzzBackoff
	// fuzzEndedByKubelet: the status manager ended the pod while the container waited in
	// back-off. The pod is done: the life stops.
	fuzzEndedByKubelet
	// fuzzRuntimeLost: the node rebooted and the runtime lost the running container; the kubelet
	// writes its default status until the new life begins.
	fuzzRuntimeLost
)

// fuzzLife is where the simulated kubelet is: which pod, which count of restarts of it (its
// epoch: a node reboot starts the next), and which run in which form.
type fuzzLife struct {
	pod, epoch int
	life       podtest.Life
	form       fuzzForm
	run        int
}

func (l fuzzLife) status() corev1.ContainerStatus {
	var s corev1.ContainerStatus
	switch l.form {
	case fuzzRunning:
		s = l.life.Running(l.run)
	case fuzzTerminated:
		s = l.life.Terminated(l.run)
	case fuzzBackoff:
		s = l.life.Backoff(l.run)
	case fuzzEndedByKubelet:
		s = l.life.EndedByKubelet(l.run)
	case fuzzRuntimeLost:
		s = l.life.RuntimeLost(l.run)
	}
	return podtest.Named(s, "c")
}

// shows are the runs whose ends the status shows: the kubelet's forms as podtest writes them,
// told here without the termination package.
func (l fuzzLife) shows() []int {
	var out []int
	switch l.form {
	case fuzzRunning, fuzzRuntimeLost: // the previous run in lastState
		if l.run > 0 {
			out = append(out, l.run-1)
		}
	case fuzzTerminated: // the previous run in lastState, this one in state
		if l.run > 0 {
			out = append(out, l.run-1)
		}
		out = append(out, l.run)
	case fuzzBackoff, fuzzEndedByKubelet: // this run moved to lastState; no instance ended else
		out = append(out, l.run)
	}
	return out
}

func (l fuzzLife) String() string {
	return fmt.Sprintf("%s[%d.%d] %v(%d)", l.life.Name, l.pod, l.epoch, [...]string{"Running", "Terminated", "Backoff", "EndedByKubelet", "RuntimeLost"}[l.form], l.run)
}

// fuzzKubelet writes the statuses of the fuzzed container. Each life takes the reasons its
// runs end with from ooms: bit i of the 16 bits from 16n (cyclically) tells that run i of the
// n-th life was OOM-killed.
type fuzzKubelet struct {
	ooms  uint64
	lives int
	cur   fuzzLife
}

func newFuzzKubelet(ooms uint64) *fuzzKubelet {
	k := &fuzzKubelet{ooms: ooms}
	k.cur = fuzzLife{life: k.life("c0")}
	return k
}

func (k *fuzzKubelet) life(name string) podtest.Life {
	bits := k.ooms>>(16*k.lives%64) | k.ooms<<(64-16*k.lives%64)
	k.lives++
	reasons := make([]string, fuzzRuns)
	for i := range reasons {
		reasons[i] = "Error"
		if bits&(1<<i) != 0 {
			reasons[i] = "OOMKilled"
		}
	}
	return podtest.NewLife(name, reasons...)
}

// advance moves on steps statuses: a run ends; an ended run waits in back-off if backoff, else
// restarts; a run in back-off is ended by the status manager if end, else restarts; after the
// runtime lost the container, the new life starts.
func (k *fuzzKubelet) advance(steps int, backoff, end bool) {
	for range steps {
		l := &k.cur
		switch l.form {
		case fuzzRunning:
			if l.run < fuzzRuns {
				l.form = fuzzTerminated
			}
		case fuzzTerminated:
			if backoff {
				l.form = fuzzBackoff
			} else {
				l.form, l.run = fuzzRunning, l.run+1
			}
		case fuzzBackoff:
			if end {
				l.form = fuzzEndedByKubelet
			} else {
				l.form, l.run = fuzzRunning, l.run+1
			}
		case fuzzRuntimeLost:
			k.rebooted()
		}
	}
}

// reboot reboots the node: if lost and a run was running, the kubelet first writes the
// runtime's default status; else the new life starts at once. A pod the status manager ended
// stays ended: it reports false.
func (k *fuzzKubelet) reboot(lost bool) bool {
	switch {
	case k.cur.form == fuzzEndedByKubelet:
		return false
	case lost && k.cur.form == fuzzRunning:
		k.cur.form = fuzzRuntimeLost
	default:
		k.rebooted()
	}
	return true
}

// rebooted starts the life after a reboot: new containers, named as the old ones, the restart
// count from 0.
func (k *fuzzKubelet) rebooted() {
	next := k.cur.life.Rebooted()
	next.Reasons = k.life(next.Name).Reasons
	k.cur = fuzzLife{pod: k.cur.pod, epoch: k.cur.epoch + 1, life: next}
}

// recreate starts a new pod under the same name, with its own containers.
func (k *fuzzKubelet) recreate() {
	pod := k.cur.pod + 1
	k.cur = fuzzLife{pod: pod, life: k.life(fmt.Sprintf("c%d", pod))}
}

func fuzzUID(pod int) string { return fmt.Sprintf("u%d", pod) }

// fuzzEnd is the end of one instance: of which pod, in which of its counts of restarts, which run.
type fuzzEnd struct{ pod, epoch, run int }

type fuzzDelivery struct {
	life       fuzzLife
	withStatus bool
}

type fuzzCall uint8

const (
	fuzzListed fuzzCall = iota
	fuzzCreated
	fuzzDeleted
)

func (c fuzzCall) String() string { return [...]string{"Upsert", "UpsertCreated", "Delete"}[c] }

type fuzzPointKey struct {
	uid string
	at  int64
}

// fuzzPending returns the points pod uid's containers hold for the next scrape.
func fuzzPending(tr *Tracker, uid types.UID) []Point {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	p := tr.pods[uid]
	if p == nil {
		return nil
	}
	var out []Point
	for _, c := range p.Containers {
		out = append(out, c.pending...)
	}
	return out
}

// fuzzSeries is the processor's counting rule for one series (docs/counting.md, as
// processor/oomcounterprocessor/internal/counting applies it): the first point is the baseline,
// history, unless it is a 1 that says it watched the kill happen (a start before its time); a 1
// at an instance not yet accounted for counts; a point of unknown outcome accounts for its
// instance uncounted; a lower instance, or a 0 where the latest instance stood at 1 (or unknown),
// starts a new count of restarts; a higher one leaves those in between unattributed.
type fuzzSeries struct {
	started  bool
	instance int64
	high     bool
}

// apply takes the next point and tells whether it counts a kill.
func (s *fuzzSeries) apply(p Point) bool {
	high := p.OOMKilled || p.Unknown
	switch {
	case !s.started:
		s.started, s.instance, s.high = true, p.Instance, high
		return p.OOMKilled && !p.Unknown && !p.Since.IsZero() && p.Since.Before(p.Time)
	case p.Instance != s.instance:
		s.instance, s.high = p.Instance, high
		return p.OOMKilled
	case s.high && !high:
		s.high = false
		return false
	case s.high:
		return false
	}
	s.high = high
	return p.OOMKilled
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
// after the earlier run looked, is news; one that run knew (its Ended) is not; without them the
// second counts as before the horizon.
func TestHorizonSecond(t *testing.T) {
	t.Parallel()
	st := podtest.NewLife("hog", "OOMKilled").Statuses()
	ended := st[2] // instance 0 ended at T0+30s, in lastState
	horizon := podtest.T0.Add(30*time.Second + 459*time.Millisecond)
	for name, tc := range map[string]struct {
		ended []termination.Key
		news  bool
	}{
		"ended after the look, in its second": {ended: []termination.Key{}, news: true},
		"known to the earlier run":            {ended: []termination.Key{{ContainerID: "containerd://hog-0"}}, news: false},
		"none recorded":                       {ended: nil, news: false},
	} {
		t.Run(name, func(t *testing.T) {
			tr := New(16)
			tr.Resume(Horizon{At: horizon, Ended: tc.ended})
			obs := tr.Upsert(podWith("u1", ended), podtest.T0.Add(time.Minute))
			assert.Equal(t, tc.news, obs.OOMKills == 1, "%+v", obs)
			assert.Equal(t, !tc.news, obs.HistoryOOMKills == 1, "%+v", obs)
		})
	}
}

func TestEndedIsWhatEndedInTheSecond(t *testing.T) {
	t.Parallel()
	tr := New(16)
	st := podtest.NewLife("hog", "OOMKilled", "OOMKilled").Statuses()
	tr.Upsert(podWith("u1", st[4]), podtest.T0.Add(2*time.Minute)) // instance 1 ended at T0+1m30s
	assert.Equal(t, []termination.Key{{ContainerID: "containerd://hog-1"}}, tr.Ended(podtest.T0.Add(90*time.Second+300*time.Millisecond)))
	assert.Equal(t, []termination.Key{}, tr.Ended(podtest.T0.Add(91*time.Second)))
}
