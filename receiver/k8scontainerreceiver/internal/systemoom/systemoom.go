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
	"maps"
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
	// counts are the count of each event as reported; restored after a restart.
	counts  map[types.UID]int32
	changed bool
	// pending are the kills since the last drain, by node; node is the own node, always shown.
	pending map[string][]Kill
	node    string
}

// New returns the tracker of the events of node, or of every node when node is empty.
func New(node string) *Tracker {
	t := &Tracker{counts: map[types.UID]int32{}, pending: map[string][]Kill{}, node: node}
	if node != "" {
		t.pending[node] = nil
	}
	return t
}

// Observe records what an event shows. news tells that the event was created while the receiver
// watched: all of its count is new.
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
	prev, known := t.counts[ev.UID]
	switch {
	case known:
	case news:
	case !t.horizon.IsZero() && !firstTime(ev).Before(t.horizon.Truncate(time.Second)):
		// Created after an earlier run's horizon (to the second: event times have no finer
		// precision), and not among the events it reported: no receiver reported any of it.
	default:
		// Already there at first sight: history, the baseline.
		prev = count
	}
	t.counts[ev.UID] = max(prev, count)
	if count > prev {
		t.changed = true
		victim, pid := parseVictim(ev.Message)
		at := lastTime(ev)
		for range count - prev {
			t.pending[ev.InvolvedObject.Name] = append(t.pending[ev.InvolvedObject.Name], Kill{At: at, Victim: victim, PID: pid})
		}
	} else if !known {
		t.changed = true
	}
}

// Forget drops a deleted event's count.
func (t *Tracker) Forget(ev *corev1.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.counts[ev.UID]; ok {
		delete(t.counts, ev.UID)
		t.changed = true
	}
}

// Drain hands each node's kills since the last drain to emit, the own node's even when none;
// emit must not keep the kills slice. If the counts changed since the last drain, it returns them
// as Restore reads them, so that a restart reports none of the kills handed out again.
func (t *Tracker) Drain(emit func(node string, kills []Kill)) (saved []byte, changed bool) {
	counts, changed := t.drain(emit)
	if !changed {
		return nil, false
	}
	// A map of strings to numbers always marshals.
	saved, _ = json.Marshal(counts)
	return saved, true
}

func (t *Tracker) drain(emit func(node string, kills []Kill)) (map[types.UID]int32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for node, kills := range t.pending {
		emit(node, kills)
		if node == t.node {
			t.pending[node] = kills[:0]
		} else {
			delete(t.pending, node)
		}
	}
	if !t.changed {
		return nil, false
	}
	t.changed = false
	return maps.Clone(t.counts), true
}

// Restore takes the counts an earlier run's Drain returned, nil if none, and that run's horizon:
// an event first seen that was created after it is news. Damaged counts are discarded, and
// the error says so; the horizon holds all the same.
func (t *Tracker) Restore(saved []byte, horizon time.Time) error {
	counts := map[types.UID]int32{}
	var err error
	if saved != nil {
		if err = json.Unmarshal(saved, &counts); err != nil {
			counts = map[types.UID]int32{}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	maps.Copy(t.counts, counts)
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
