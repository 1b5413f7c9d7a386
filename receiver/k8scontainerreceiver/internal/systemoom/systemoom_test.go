// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package systemoom_test

// The Tracker as the scraper drives it: events observed, kills drained, counts saved and
// restored across a restart.

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/systemoom"
)

// drain returns the kills each node had since the last drain, and the saved counts if they
// changed.
func drain(tr *systemoom.Tracker) (map[string][]systemoom.Kill, []byte) {
	got := map[string][]systemoom.Kill{}
	var saved []byte
	err := tr.DrainRecorded(func(b []byte) error { saved = b; return nil }, func(node string, kills []systemoom.Kill) {
		got[node] = append([]systemoom.Kill{}, kills...)
	})
	if err != nil {
		panic(err)
	}
	return got, saved
}

// grown is ev with its count grown to count, last seen at last after podtest.T0.
func grown(ev *corev1.Event, count int32, last time.Duration) *corev1.Event {
	ev = ev.DeepCopy()
	ev.Count = count
	ev.LastTimestamp.Time = podtest.T0.Add(last)
	return ev
}

func TestBaselineAtFirstSightThenGrowth(t *testing.T) {
	tr := systemoom.New(podtest.Node)
	ev := scrapertest.SystemOOM("e1", podtest.Node, 3, -time.Hour, -time.Minute, "java")
	tr.Observe(ev, false)
	got, saved := drain(tr)
	assert.Equal(t, map[string][]systemoom.Kill{podtest.Node: {}}, got, "already there: history; the own node is shown all the same")
	assert.JSONEq(t, `[{"name": "node-a.e1", "uid": "e1", "count": 3}]`, string(saved), "the baseline is saved")

	tr.Observe(grown(ev, 5, time.Second), true)
	got, saved = drain(tr)
	kill := systemoom.Kill{At: podtest.T0.Add(time.Second), Victim: "java", PID: 4242}
	assert.Equal(t, map[string][]systemoom.Kill{podtest.Node: {kill, kill}}, got, "the count grew by 2")
	assert.JSONEq(t, `[{"name": "node-a.e1", "uid": "e1", "count": 5}]`, string(saved))

	tr.Observe(grown(ev, 5, time.Second), true)
	got, saved = drain(tr)
	assert.Equal(t, map[string][]systemoom.Kill{podtest.Node: {}}, got, "the same count again is nothing new")
	assert.Nil(t, saved, "nothing changed")
}

func TestNewsCountsWhole(t *testing.T) {
	tr := systemoom.New(podtest.Node)
	tr.Observe(scrapertest.SystemOOM("e1", podtest.Node, 2, -time.Hour, time.Second, "stress"), true)
	got, _ := drain(tr)
	assert.Len(t, got[podtest.Node], 2)
}

func TestOtherNodesAndOtherEvents(t *testing.T) {
	own := systemoom.New(podtest.Node)
	all := systemoom.New("")
	other := scrapertest.SystemOOM("e1", "node-b", 1, 0, 0, "java")
	notOOM := scrapertest.SystemOOM("e2", podtest.Node, 1, 0, 0, "java")
	notOOM.Reason = "NodeNotReady"
	for _, tr := range []*systemoom.Tracker{own, all} {
		tr.Observe(other, true)
		tr.Observe(notOOM, true)
	}
	got, _ := drain(own)
	assert.Equal(t, map[string][]systemoom.Kill{podtest.Node: {}}, got, "another node's events are not the own node's")
	got, _ = drain(all)
	assert.Len(t, got["node-b"], 1)
	assert.NotContains(t, got, podtest.Node, "without an own node, a node shows only with kills")
	got, _ = drain(all)
	assert.Empty(t, got, "a node with no new kills is shown once")
}

// A deleted event's count is kept, and saved: the recorder may create the event again.
func TestForgetKeepsTheCount(t *testing.T) {
	tr := systemoom.New(podtest.Node)
	ev := scrapertest.SystemOOM("e1", podtest.Node, 1, 0, 0, "java")
	tr.Observe(ev, true)
	drain(tr)
	tr.Forget(ev)
	_, saved := drain(tr)
	assert.JSONEq(t, `[{"name": "node-a.e1", "uid": "e1", "count": 1, "gone": true}]`, string(saved))
}

// recreated is ev as the kubelet's event recorder creates it again after the API server deleted
// it (--event-ttl): the same name, a new UID, the count of its memory plus one, the first
// observation the old one's, created now.
func recreated(ev *corev1.Event, uid string, count int32, now time.Duration) *corev1.Event {
	ev = grown(ev, count, now)
	ev.UID = types.UID(uid)
	ev.CreationTimestamp.Time = podtest.T0.Add(now)
	return ev
}

// An aggregated SystemOOM event expired and the next system OOM made the recorder create it
// again with the count going on: one kill, whether the informer saw the deletion and a new
// event, or, across a watch gap, an update from the old UID to the new one.
func TestEventCreatedAgainByTheRecorder(t *testing.T) {
	old := scrapertest.SystemOOM("old", podtest.Node, 25, -3*time.Hour, -2*time.Hour, "java")
	again := recreated(old, "new", 26, 0)
	for name, deliver := range map[string]func(tr *systemoom.Tracker){
		"deleted, then created": func(tr *systemoom.Tracker) {
			tr.Forget(old)
			tr.Observe(again, true)
		},
		"an update across a watch gap": func(tr *systemoom.Tracker) { tr.Observe(again, true) },
	} {
		t.Run(name, func(t *testing.T) {
			tr := systemoom.New(podtest.Node)
			tr.Observe(old, false)
			drain(tr)
			deliver(tr)
			got, _ := drain(tr)
			assert.Len(t, got[podtest.Node], 1)
			tr.Observe(grown(again, 28, time.Minute), true)
			got, _ = drain(tr)
			assert.Len(t, got[podtest.Node], 2, "it grows on from there")
		})
	}
}

// The same after a collector restart with storage: the deleted event's count was saved.
func TestEventCreatedAgainWhileTheCollectorWasDown(t *testing.T) {
	old := scrapertest.SystemOOM("old", podtest.Node, 25, -3*time.Hour, -2*time.Hour, "java")
	first := systemoom.New(podtest.Node)
	first.Observe(old, false)
	first.Forget(old)
	_, saved := drain(first)

	second := systemoom.New(podtest.Node)
	require.NoError(t, second.Restore(saved, podtest.T0.Add(-time.Hour)))
	second.Observe(recreated(old, "new", 27, 0), false)
	got, _ := drain(second)
	assert.Len(t, got[podtest.Node], 2, "two kills since the earlier run reported 25")
}

// An event the recorder created again whose earlier count no run of the receiver saved: only
// the kill that made the recorder create it is known to be new.
func TestEventCreatedAgainUnknownBefore(t *testing.T) {
	old := scrapertest.SystemOOM("old", podtest.Node, 25, -3*time.Hour, -2*time.Hour, "java")
	tr := systemoom.New(podtest.Node)
	tr.Observe(recreated(old, "new", 26, 0), true)
	got, _ := drain(tr)
	assert.Len(t, got[podtest.Node], 1)

	// At first sight after a restart, created after the horizon: the same.
	restarted := systemoom.New(podtest.Node)
	require.NoError(t, restarted.Restore(nil, podtest.T0.Add(-time.Minute)))
	restarted.Observe(recreated(old, "new", 26, 0), false)
	got, _ = drain(restarted)
	assert.Len(t, got[podtest.Node], 1)
}

// Counts saved by UID, as earlier versions saved them, are the baseline of their events.
func TestRestoreCountsSavedByUID(t *testing.T) {
	tr := systemoom.New(podtest.Node)
	require.NoError(t, tr.Restore([]byte(`{"e1": 3}`), podtest.T0.Add(-time.Hour)))
	tr.Observe(scrapertest.SystemOOM("e1", podtest.Node, 4, -2*time.Hour, 0, "java"), false)
	got, _ := drain(tr)
	assert.Len(t, got[podtest.Node], 1)
}

// After a restart, the counts an earlier run saved are the baseline of its events, and an event
// created after its horizon counts whole even if it was already there at first sight.
func TestRestoreThenAfterTheHorizon(t *testing.T) {
	first := systemoom.New(podtest.Node)
	e1 := scrapertest.SystemOOM("e1", podtest.Node, 2, -time.Hour, -time.Hour, "java")
	first.Observe(e1, false)
	_, saved := drain(first)

	second := systemoom.New(podtest.Node)
	require.NoError(t, second.Restore(saved, podtest.T0))
	second.Observe(grown(e1, 5, 30*time.Second), false)
	second.Observe(scrapertest.SystemOOM("e4", podtest.Node, 1, 40*time.Second, 40*time.Second, "stress"), false)
	second.Observe(scrapertest.SystemOOM("e0", podtest.Node, 4, -time.Minute, -time.Minute, "java"), false)
	got, _ := drain(second)
	victims := map[string]int{}
	for _, k := range got[podtest.Node] {
		victims[k.Victim]++
	}
	assert.Equal(t, map[string]int{"java": 3, "stress": 1}, victims, "e1 grew by 3, e4 is news, e0 is history")
}

// Event times have a second's precision: an event first seen after a restart, stamped in the
// second of the earlier run's horizon and not among the counts it reported, counts whole.
func TestInTheSecondOfTheHorizon(t *testing.T) {
	tr := systemoom.New(podtest.Node)
	require.NoError(t, tr.Restore([]byte(`{"known": 2}`), podtest.T0.Add(459*time.Millisecond)))
	tr.Observe(scrapertest.SystemOOM("new", podtest.Node, 1, 0, 0, "java"), false)
	tr.Observe(scrapertest.SystemOOM("known", podtest.Node, 2, -time.Minute, 0, "java"), false)
	tr.Observe(scrapertest.SystemOOM("old", podtest.Node, 3, -time.Second, -time.Second, "java"), false)
	got, _ := drain(tr)
	assert.Len(t, got[podtest.Node], 1)
}

func TestRestoreDamagedCountsKeepsTheHorizon(t *testing.T) {
	tr := systemoom.New(podtest.Node)
	require.Error(t, tr.Restore([]byte("{"), podtest.T0))
	tr.Observe(scrapertest.SystemOOM("e1", podtest.Node, 2, time.Second, time.Second, "java"), false)
	got, _ := drain(tr)
	assert.Len(t, got[podtest.Node], 2, "created after the horizon: news")
	require.NoError(t, tr.Restore(nil, podtest.T0), "nothing saved is no damage")
}

// A drain whose counts could not be recorded hands nothing out: the kills wait for the next.
func TestDrainWaitsForTheRecord(t *testing.T) {
	tr := systemoom.New(podtest.Node)
	tr.Observe(scrapertest.SystemOOM("e1", podtest.Node, 2, 0, time.Second, "java"), true)
	failed := errors.New("disk full")
	emitted := 0
	err := tr.DrainRecorded(func([]byte) error { return failed }, func(_ string, kills []systemoom.Kill) { emitted += len(kills) })
	require.ErrorIs(t, err, failed)
	assert.Zero(t, emitted)
	got, saved := drain(tr)
	assert.Len(t, got[podtest.Node], 2)
	assert.NotNil(t, saved, "the counts are still to be recorded")
}
