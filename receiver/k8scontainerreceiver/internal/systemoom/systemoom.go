// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package systemoom turns the kubelet's SystemOOM events into system OOM kills. When the whole
// node runs out of memory, the kubelet records a Warning event with reason SystemOOM on its Node
// object, one per kill; identical events are aggregated into one whose count grows. A Tracker
// counts the growth of each event, tells history from news after a restart, and hands out the
// kills since the last scrape.
package systemoom

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Reason is the reason of the kubelet's event for a system OOM kill.
const Reason = "SystemOOM"

// Kill is one system OOM kill.
type Kill struct {
	// At is when the event last saw the kill; Victim and PID are the killed process, when the
	// kubelet names it.
	At     time.Time
	Victim string
	PID    int64
}

// Tracker is what is known of the SystemOOM events; it is safe for concurrent use, since the
// event informer observes while the scrape drains.
type Tracker struct {
	mu sync.Mutex
	// horizon is when an earlier run last looked; zero if unknown.
	horizon time.Time
	// events are the events as reported, by name: the kubelet's event recorder keeps the count
	// of an aggregated event after the API server deleted it (--event-ttl), and at the next
	// kill creates it again under the same name, with a new UID and the count going on.
	// Restored after a restart.
	events map[string]*event
	// gone are the names of deleted events, oldest deletion first, kept up to maxGone.
	gone []string
	// legacy are counts by event UID, as earlier versions saved them.
	legacy  map[types.UID]int32
	changed bool
	// pending are the kills since the last drain, by node; node is the own node, always shown.
	pending map[string][]Kill
	node    string
}

// event is one event as reported; the JSON names are those of the saved events.
type event struct {
	Name  string    `json:"name"`
	UID   types.UID `json:"uid"`
	Count int32     `json:"count"`
	// Gone tells that the event was deleted; its count is kept for the recorder's next create.
	Gone bool `json:"gone,omitempty"`
}

// maxGone bounds the deleted events kept: the recorder keeps at most 4096 aggregated events,
// and a node's kubelet rarely more than one SystemOOM event at a time.
const maxGone = 1024

// recreatedAfter is how long after an event's first observation its creation shows that the
// recorder created it again from its memory: a new event is created as it is first observed.
const recreatedAfter = time.Minute

// New returns the tracker of the events of node, or of every node when node is empty.
func New(node string) *Tracker {
	t := &Tracker{events: map[string]*event{}, pending: map[string][]Kill{}, node: node}
	if node != "" {
		t.pending[node] = nil
	}
	return t
}

// Observe records what an event shows. news tells that the event was created while the receiver
// watched: all of its count is new, but for an event the recorder created again.
func (t *Tracker) Observe(ev *corev1.Event, news bool) {
	if ev.Reason != Reason || ev.InvolvedObject.Kind != "Node" {
		return
	}
	count := eventCount(ev)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.node != "" && ev.InvolvedObject.Name != t.node {
		return
	}
	prev, known := t.events[ev.Name]
	var reported int32
	switch {
	case known:
		// The same event, or the recorder's new one of the same name after the old expired:
		// either way its count goes on from what was reported.
		reported = min(prev.Count, count)
	case t.legacy != nil && t.legacy[ev.UID] > 0:
		reported = min(t.legacy[ev.UID], count)
	case recreated(ev) && (news || t.afterHorizon(ev.CreationTimestamp.Time)):
		// Created again by the recorder from its memory of an event this receiver never saw
		// whole: only the observation that created it is known to be new.
		reported = count - 1
	case news:
	case t.afterHorizon(firstTime(ev)):
		// Created after an earlier run's horizon, and not among the events it reported: no
		// receiver reported any of it.
	default:
		// Already there at first sight: history, the baseline.
		reported = count
	}
	if !known || prev.UID != ev.UID || prev.Gone {
		t.changed = true
		t.revive(ev.Name)
	}
	t.events[ev.Name] = &event{Name: ev.Name, UID: ev.UID, Count: max(reported, count)}
	if count > reported {
		t.changed = true
		victim, pid := parseVictim(ev.Message)
		at := lastTime(ev)
		for range count - reported {
			t.pending[ev.InvolvedObject.Name] = append(t.pending[ev.InvolvedObject.Name], Kill{At: at, Victim: victim, PID: pid})
		}
	}
}

// afterHorizon tells that at is after an earlier run's horizon, to the second: event times have
// no finer precision.
func (t *Tracker) afterHorizon(at time.Time) bool {
	return !t.horizon.IsZero() && !at.Before(t.horizon.Truncate(time.Second))
}

// recreated tells an event created well after its first observation: the recorder created it
// again, under the name it had, after the API server deleted it.
func recreated(ev *corev1.Event) bool {
	first, created := firstTime(ev), ev.CreationTimestamp.Time
	return !created.IsZero() && !first.IsZero() && created.Sub(first) >= recreatedAfter
}

// Forget notes that an event was deleted. Its count is kept: the recorder may create it again.
func (t *Tracker) Forget(ev *corev1.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.events[ev.Name]
	if !ok || e.UID != ev.UID || e.Gone {
		return
	}
	e.Gone = true
	t.changed = true
	t.gone = append(t.gone, ev.Name)
	if len(t.gone) > maxGone {
		delete(t.events, t.gone[0])
		t.gone = t.gone[1:]
	}
}

// revive drops name from the deleted events, if it is there.
func (t *Tracker) revive(name string) {
	for i, n := range t.gone {
		if n == name {
			t.gone = append(t.gone[:i], t.gone[i+1:]...)
			return
		}
	}
}

// DrainRecorded hands each node's kills since the last drain to emit, the own node's even when
// none; emit must not keep the kills slice. First it hands record the counts as Restore reads
// them, nil if they did not change since the last drain: once they are recorded, a restart
// reports none of the kills handed out again. If record fails, nothing is drained, and its
// error is returned.
func (t *Tracker) DrainRecorded(record func(saved []byte) error, emit func(node string, kills []Kill)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var saved []byte
	if t.changed {
		events := make([]event, 0, len(t.events))
		for _, e := range t.events {
			events = append(events, *e)
		}
		slices.SortFunc(events, func(a, b event) int { return strings.Compare(a.Name, b.Name) })
		// Strings and numbers always marshal.
		saved, _ = json.Marshal(events)
	}
	if err := record(saved); err != nil {
		return err
	}
	t.changed = false
	for node, kills := range t.pending {
		emit(node, kills)
		if node == t.node {
			t.pending[node] = kills[:0]
		} else {
			delete(t.pending, node)
		}
	}
	return nil
}

// Restore takes the counts an earlier run's Drain returned, nil if none, and that run's horizon:
// an event first seen that was created after it is news. Damaged counts are discarded, and
// the error says so; the horizon holds all the same.
func (t *Tracker) Restore(saved []byte, horizon time.Time) error {
	var events []event
	var legacy map[types.UID]int32
	var err error
	switch {
	case len(saved) == 0:
	case saved[0] == '{':
		// Counts by event UID, as earlier versions saved them.
		err = json.Unmarshal(saved, &legacy)
	default:
		err = json.Unmarshal(saved, &events)
	}
	if err != nil {
		events, legacy = nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range events {
		t.events[e.Name] = &e
		if e.Gone {
			t.gone = append(t.gone, e.Name)
		}
	}
	t.legacy = legacy
	t.horizon = horizon
	return err
}

func eventCount(ev *corev1.Event) int32 {
	n := ev.Count
	if ev.Series != nil {
		n = max(n, ev.Series.Count)
	}
	return max(n, 1)
}

func firstTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

func lastTime(ev *corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	}
	return firstTime(ev)
}

// parseVictim reads "System OOM encountered, victim process: <name>, pid: <pid>"; older kubelets
// write no victim.
func parseVictim(msg string) (name string, pid int64) {
	_, rest, ok := strings.Cut(msg, "victim process: ")
	if !ok {
		return "", 0
	}
	name, pidText, ok := strings.Cut(rest, ", pid: ")
	if !ok {
		return rest, 0
	}
	pid, _ = strconv.ParseInt(strings.TrimSpace(pidText), 10, 64)
	return name, pid
}
