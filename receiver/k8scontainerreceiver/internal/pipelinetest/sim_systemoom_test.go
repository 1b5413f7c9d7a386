// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// ---- SystemOOM events of the node ------------------------------------------------------------
//
// The kubelet's event recorder writes one SystemOOM event per victim: created with count 1,
// aggregated (count + 1, lastTimestamp now) on each further kill. The API server deletes an event
// when its TTL (--event-ttl, an hour by default) ran out; the recorder still holds it in its
// cache and, on the next kill, creates it again under the same name with a new UID, its count
// going on and its old firstTimestamp. The scraper reaches these events only through its event
// informer, so only the runs through the fake clientset draw them.
//
// The truth is the number of system OOMs the receiver of the lineage could see: a kill before
// the lineage's first collector listed the events is history; one while the event watch was
// down, or the collector down with its storage kept, becomes visible with the next list. The
// exported k8s.node.system_oom_kills must equal it, less the deltas of lost or late batches
// (a late delta is older than the series' latest: the processor drops it), and is never above it.

const (
	formSysNew        simForm = "SystemOOM: a new event, count 1"
	formSysAggregated simForm = "SystemOOM: the event aggregated, its count grows"
	formSysExpired    simForm = "SystemOOM: the API server deletes the expired event"
	formSysRecreated  simForm = "SystemOOM: the recorder creates the expired event again, delivered as delete and add"
	formSysRelisted   simForm = "SystemOOM: created again across a watch gap or a restart with storage: the old UID's count goes on under the new"
)

// simEventTTL is how long ago an event must have been created before the sim lets it expire:
// the real TTL is an hour, longer than a run, so only the events of long ago expire, and the
// receiver tells a recreated event by a creation a minute or more after its firstTimestamp.
const simEventTTL = 90 * time.Second

var eventsGVR = corev1.SchemeGroupVersion.WithResource("events")

// simRecorded is the recorder's memory of the event of one victim.
type simRecorded struct {
	count int32
	first time.Time
	uids  int
}

type simEvents struct {
	s   *simulation
	h   *scrapertest.Harness
	mu  sync.Mutex
	fws []*watch.FakeWatcher
	// handled counts the event notifications the running scraper handled; expected how many
	// it must have handled.
	handled  *atomic.Int64
	expected int64
	rv       int
	// live are the events the API server holds, by name; informer the resource version and UID
	// of each the running receiver's informer holds.
	live     map[string]*corev1.Event
	informer map[string]*corev1.Event
	recorder map[string]*simRecorded
	watchUp  bool
	relists  int
	// truth: system OOMs of the lineage the receiver could have seen; unseen: those it could not
	// yet (watch down, collector down); lost: deltas in lost or late batches. exact: nothing
	// made the count uncertain (see startCollector).
	truth, unseen, lost int64
	exact               bool
	// unseenOf are the unseen system OOMs by event name; slack the kills the receiver may miss
	// where docs/counting.md says so: an event created again that no receiver of the lineage
	// saw counts 1, the observation that created it, however often it was aggregated since.
	unseenOf map[string]int64
	slack    int64
	// stored are the names whose counts a receiver of the lineage recorded in storage; seenGen
	// the names the running receiver saw.
	stored, seenGen map[string]bool
	// storedUID is the UID of each stored event as last recorded.
	storedUID map[string]types.UID
}

var simVictims = []string{"java", "stress", "python"}

func (s *simulation) newSimEvents(h *scrapertest.Harness, handled *atomic.Int64) *simEvents {
	e := &simEvents{s: s, h: h, handled: handled, live: map[string]*corev1.Event{}, informer: map[string]*corev1.Event{},
		recorder: map[string]*simRecorded{}, storedUID: map[string]types.UID{}, unseenOf: map[string]int64{}, stored: map[string]bool{}, seenGen: map[string]bool{}, exact: true}
	h.Client.PrependWatchReactor("events", func(k8stesting.Action) (bool, watch.Interface, error) {
		fw := watch.NewFakeWithChanSize(64, false)
		e.mu.Lock()
		e.fws = append(e.fws, fw)
		e.mu.Unlock()
		return true, fw, nil
	})
	// Events of long ago: the recorder's memory of them, some still on the API server.
	for i, v := range simVictims {
		if s.rng.IntN(3) == 0 {
			continue
		}
		first := podtest.T0.Add(-time.Duration(2+i) * time.Hour)
		r := &simRecorded{count: int32(1 + s.rng.IntN(3)), first: first}
		e.recorder[v] = r
		if s.rng.IntN(4) != 0 {
			e.put(v, r, first, watch.Added, false)
		}
	}
	return e
}

func simEventName(victim string) string { return podtest.Node + ".systemoom-" + victim }

func (e *simEvents) watchers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.fws)
}

// put writes victim's event as the recorder knows it to the API server, and delivers it if
// deliver.
func (e *simEvents) put(victim string, r *simRecorded, created time.Time, kind watch.EventType, deliver bool) {
	e.rv++
	name := simEventName(victim)
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: metav1.NamespaceDefault, Name: name, UID: types.UID(fmt.Sprintf("%s-%d", name, r.uids)),
			ResourceVersion: fmt.Sprint(e.rv), CreationTimestamp: metav1.NewTime(created),
		},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: podtest.Node, UID: types.UID(podtest.Node)},
		Reason:         "SystemOOM",
		Type:           corev1.EventTypeWarning,
		Message:        "System OOM encountered, victim process: " + victim + ", pid: 4242",
		Source:         corev1.EventSource{Component: "kubelet", Host: podtest.Node},
		Count:          r.count,
		FirstTimestamp: metav1.NewTime(r.first),
		LastTimestamp:  metav1.NewTime(e.now()),
	}
	if kind == watch.Added {
		require.NoError(e.s.t, e.h.Client.Tracker().Add(ev))
	} else {
		require.NoError(e.s.t, e.h.Client.Tracker().Update(eventsGVR, ev, ev.Namespace))
	}
	e.live[name] = ev
	if deliver {
		e.send(kind, ev)
	}
}

func (e *simEvents) now() time.Time { return podtest.T0.Add(time.Duration(e.s.step) * time.Second) }

// delivering tells that a change now reaches the running receiver through its watch.
func (e *simEvents) delivering() bool { return e.s.up && e.watchUp }

func (e *simEvents) send(kind watch.EventType, ev *corev1.Event) {
	e.mu.Lock()
	fw := e.fws[len(e.fws)-1]
	e.mu.Unlock()
	fw.Action(kind, ev.DeepCopy())
	if kind == watch.Deleted {
		delete(e.informer, ev.Name)
	} else {
		e.informer[ev.Name] = ev
		e.seenGen[ev.Name] = true
	}
	e.wait(1)
}

func (e *simEvents) wait(n int64) {
	e.expected += n
	require.Eventually(e.s.t, func() bool { return e.handled.Load() >= e.expected }, 5*time.Second, time.Millisecond, "events handled")
}

// act is one change of the node's SystemOOM events, or of the event watch.
func (e *simEvents) act() {
	s := e.s
	r := s.rng.IntN(10)
	if s.up && !e.watchUp {
		// While the watch is down, events expire and come again more often than it relists:
		// the relist then shows an event of a new UID under a name the informer holds.
		r = []int{0, 0, 0, 0, 6, 6, 6, 6, 9, 9}[r]
	} else if s.up && e.expirable() != nil {
		// An event that may expire: break the watch more often, so that it may expire and come
		// again unseen.
		r = []int{0, 0, 0, 0, 0, 6, 8, 8, 8, 8}[r]
	}
	switch {
	case r < 6:
		e.kill(e.victim())
	case r < 8:
		old := e.expirable()
		if len(old) == 0 {
			e.kill(simVictims[s.rng.IntN(len(simVictims))])
			return
		}
		v := old[s.rng.IntN(len(old))]
		ev := e.live[simEventName(v)]
		require.NoError(s.t, e.h.Client.Tracker().Delete(eventsGVR, ev.Namespace, ev.Name))
		delete(e.live, ev.Name)
		s.hit(formSysExpired)
		s.logf("the API server deletes the expired SystemOOM event %s (%s, count %d)", ev.Name, ev.UID, ev.Count)
		if e.delivering() {
			e.send(watch.Deleted, ev)
		}
	case r < 9:
		if s.up && e.watchUp && !s.reliable && e.relists == 0 {
			e.watchUp = false
			s.logf("the event watch breaks")
		}
	default:
		if s.up && !e.watchUp && e.relists == 0 {
			e.relist()
		}
	}
}

// expirable are the victims whose events the API server may delete now.
func (e *simEvents) expirable() []string {
	var old []string
	for _, v := range simVictims {
		if ev := e.live[simEventName(v)]; ev != nil && e.now().Sub(ev.CreationTimestamp.Time) >= simEventTTL {
			old = append(old, v)
		}
	}
	return old
}

// victim draws the victim of a system OOM: half the time, and always while no watch delivers,
// one whose event expired, if any, so that the recorder creates events again.
func (e *simEvents) victim() string {
	if e.s.rng.IntN(2) == 0 || !e.delivering() {
		for _, v := range simVictims {
			if e.recorder[v] != nil && e.live[simEventName(v)] == nil {
				return v
			}
		}
	}
	return simVictims[e.s.rng.IntN(len(simVictims))]
}

// kill is a system OOM whose victim is victim: the recorder aggregates its event, creates it,
// or creates it again after the API server deleted it.
func (e *simEvents) kill(victim string) {
	s := e.s
	name := simEventName(victim)
	r := e.recorder[victim]
	deliver := e.delivering()
	switch {
	case r == nil:
		r = &simRecorded{count: 1, first: e.now()}
		e.recorder[victim] = r
		e.put(victim, r, e.now(), watch.Added, deliver)
		s.hit(formSysNew)
		s.logf("system OOM of %s: a new event %s", victim, name)
	case e.live[name] != nil:
		r.count++
		e.put(victim, r, e.live[name].CreationTimestamp.Time, watch.Modified, deliver)
		s.hit(formSysAggregated)
		s.logf("system OOM of %s: event %s aggregated, count %d", victim, name, r.count)
	default:
		r.count++
		r.uids++
		e.put(victim, r, e.now(), watch.Added, deliver)
		if deliver {
			s.hit(formSysRecreated)
		}
		s.logf("system OOM of %s: the recorder creates %s again as %s, count %d", victim, name, e.live[name].UID, r.count)
	}
	if deliver {
		// Kills of an event deleted before the receiver saw them come to light with the count
		// of the event created again.
		e.truth += 1 + e.unseenOf[name]
		e.unseen -= e.unseenOf[name]
		delete(e.unseenOf, name)
	} else {
		e.unseen++
		e.unseenOf[name]++
	}
}

// relist breaks the event watch with 410 Gone: the informer lists again and passes on what
// changed.
func (e *simEvents) relist() {
	s := e.s
	e.relists++
	// Every listed event gets a new resource version, as the pod harness's relist does: the
	// informer passes each on, and the test knows how many notifications to wait for.
	n := int64(len(e.live))
	for _, name := range sortedKeys(e.live) {
		ev := e.live[name].DeepCopy()
		e.rv++
		ev.ResourceVersion = fmt.Sprint(e.rv)
		require.NoError(s.t, e.h.Client.Tracker().Update(eventsGVR, ev, ev.Namespace))
		e.live[name] = ev
		if old, ok := e.informer[name]; ok && old.UID != ev.UID {
			s.hit(formSysRelisted)
		}
	}
	for name := range e.informer {
		if e.live[name] == nil {
			n++
		}
	}
	s.logf("the event watch ends with 410 Gone: the informer relists (%d changes)", n)
	w := e.watchers()
	e.mu.Lock()
	fw := e.fws[len(e.fws)-1]
	e.mu.Unlock()
	fw.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "resource version too old"})
	require.Eventually(s.t, func() bool { return e.watchers() > w }, 10*time.Second, time.Millisecond, "event watch again")
	e.wait(n)
	e.listed()
	e.watchUp = true
}

// listed notes that the informer holds what the API server holds.
func (e *simEvents) listed() {
	for name, ev := range e.live {
		if !e.seenGen[name] && !e.stored[name] && ev.CreationTimestamp.Sub(ev.FirstTimestamp.Time) >= time.Minute && e.unseenOf[name] > 1 {
			e.slack += e.unseenOf[name] - 1
			e.s.logf("event %s, created again, is new to the receivers of the lineage: it counts 1 of its %d system OOMs", name, e.unseenOf[name])
		}
	}
	e.informer = map[string]*corev1.Event{}
	for name, ev := range e.live {
		e.informer[name] = ev
		e.seenGen[name] = true
		e.truth += e.unseenOf[name]
		e.unseen -= e.unseenOf[name]
		delete(e.unseenOf, name)
	}
}

// starting is called before a collector starts; it returns the event watches opened so far.
func (e *simEvents) starting() int {
	s := e.s
	if !s.keepState {
		e.truth, e.unseen, e.lost, e.slack, e.exact = 0, 0, 0, 0, true
		e.stored = map[string]bool{}
		e.storedUID = map[string]types.UID{}
		e.unseenOf = map[string]int64{}
	} else {
		for name, ev := range e.live {
			if e.stored[name] && e.storedUID[name] != ev.UID {
				s.hit(formSysRelisted)
			}
			if !e.stored[name] && e.exact {
				// No receiver of the lineage recorded this event: it may be taken as history, or
				// counted whole, or as 1 if the recorder created it again (docs/counting.md,
				// SystemOOM events). The count is bounded by the truth from here on.
				e.exact = false
				s.logf("event %s was not recorded before the restart: its system OOM count is bounded, not exact", name)
			}
		}
	}
	e.seenGen = map[string]bool{}
	e.handled.Store(0)
	e.expected = 0
	e.relists = 0
	e.watchUp = true
	return e.watchers()
}

// started waits until the new receiver's event informer listed the events and watches.
func (e *simEvents) started(watchers int) {
	require.Eventually(e.s.t, func() bool { return e.watchers() > watchers }, 10*time.Second, time.Millisecond, "event watch")
	e.wait(int64(len(e.live)))
	e.listed()
}

// scraped notes a scrape of a receiver: with storage, what it saw is recorded.
func (e *simEvents) scraped() {
	if e.s.persistent {
		for name := range e.seenGen {
			e.stored[name] = true
			if ev := e.informer[name]; ev != nil {
				e.storedUID[name] = ev.UID
			}
		}
	}
}

// systemDeltas sums the system OOM deltas of md.
func systemDeltas(md pmetric.Metrics) int64 {
	var n int64
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() == "k8s.node.system_oom_killed" && m.Type() == pmetric.MetricTypeSum {
					for _, dp := range m.Sum().DataPoints().All() {
						n += dp.IntValue()
					}
				}
			}
		}
	}
	return n
}

// checkSystemOOMs checks the k8s.node.system_oom_kills the processor exported for a batch.
func (e *simEvents) check(out []pmetric.Metrics) {
	s := e.s
	value, found := int64(0), false
	for _, md := range out {
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != "k8s.node.system_oom_kills" {
						continue
					}
					if node, _ := rm.Resource().Attributes().Get("k8s.node.name"); node.Str() != podtest.Node {
						s.fail("a system OOM count of another node", "%s", node.Str())
						return
					}
					dps := m.Sum().DataPoints()
					if dps.Len() > 0 {
						value, found = dps.At(dps.Len()-1).IntValue(), true
					}
				}
			}
		}
	}
	if !found {
		return
	}
	s.checked++
	switch {
	case value > e.truth:
		s.fail("system OOM count above the truth", "exported %d, %d system OOMs since the history horizon", value, e.truth)
	case e.exact && (value > e.truth-e.lost || value < e.truth-e.lost-e.slack):
		s.fail("system OOM count not exact", "exported %d, %d system OOMs since the history horizon, %d in lost batches, %d created again unseen", value, e.truth, e.lost, e.slack)
	}
}
