// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package containerstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
)

// The collector was down while instances 2 and 3 were both OOM-killed; the status shows the
// end of 3 only. The earlier run had reported up to instance 2: the end of 2 is unattributed,
// the end of 3 counted.
func TestResumeReportsWhatEndedUnseenWhileDown(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "OOMKilled")
	before := New(16)
	before.Upsert(podWith("u1", hog.Running(2)), podtest.T0.Add(2*time.Minute))
	var h Horizon
	horizon := podtest.T0.Add(2*time.Minute + 10*time.Second)
	require.NoError(t, before.DrainRecorded(horizon, func(r Horizon, _ Pending) error { h = r; return nil }, func(*Pod, *Container, []Point) {}))
	assert.Equal(t, []Reported{{PodUID: "u1", Unended: map[string]int64{"hog": 2}, Ended: map[string]string{"hog": "containerd://hog-1"}}}, h.Reported)

	b, err := h.MarshalBinary()
	require.NoError(t, err)
	var restored Horizon
	require.NoError(t, restored.UnmarshalBinary(b))
	after := New(16)
	after.Resume(restored)
	obs := after.Upsert(podWith("u1", hog.Running(4)), podtest.T0.Add(5*time.Minute))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1, Unseen: 1}, obs)
	at := podtest.T0.Add(5 * time.Minute)
	assert.Equal(t, []Point{
		{Instance: 2, Unknown: true, Time: at.Add(1)},
		{Instance: 3, Time: at.Add(2)},
		{Instance: 3, OOMKilled: true, Time: at.Add(3)},
	}, drain(after, at.Add(time.Second))[0].points)
}

// The earlier run had not yet seen the end of instance 2 when it last looked (the status came
// late), though the end was before: no receiver reported it, so it is news.
func TestResumeReportsALateStatusEndedBeforeTheHorizon(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled")
	horizon := podtest.T0.Add(2*time.Minute + 50*time.Second) // instance 2 ended at 2m30s
	h := Horizon{At: horizon, Ended: []termination.Key{}, Reported: []Reported{{PodUID: "u1", Unended: map[string]int64{"hog": 2}}}}
	tr := New(16)
	tr.Resume(h)
	obs := tr.Upsert(podWith("u1", hog.Running(3)), podtest.T0.Add(4*time.Minute))
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, obs)
	pts := drain(tr, podtest.T0.Add(5*time.Minute))[0].points
	require.Len(t, pts, 2)
	assert.Equal(t, int64(2), pts[1].Instance)
	assert.True(t, pts[1].OOMKilled)
}

// What the earlier run reported is history; so is a count that was reset since (the restart
// count is below what was reported).
func TestResumeKeepsWhatWasReported(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled")
	h := Horizon{At: podtest.T0.Add(10 * time.Minute), Ended: []termination.Key{}, Reported: []Reported{{PodUID: "u1", Unended: map[string]int64{"hog": 3}}}}
	tr := New(16)
	tr.Resume(h)
	assert.Equal(t, Observed{HistoryOOMKills: 1}, tr.Upsert(podWith("u1", hog.Running(3)), podtest.T0.Add(11*time.Minute)))

	reset := New(16)
	reset.Resume(Horizon{At: podtest.T0.Add(10 * time.Minute), Ended: []termination.Key{}, Reported: []Reported{{PodUID: "u1", Unended: map[string]int64{"hog": 9}}}})
	assert.Equal(t, Observed{HistoryOOMKills: 1}, reset.Upsert(podWith("u1", hog.Running(3)), podtest.T0.Add(11*time.Minute)))
}

// A node clock ahead of the collector's: an end after the horizon that claims to be in the future
// is not trusted as news at first sight, since an end the earlier run reported could look so.
// An instance whose end the earlier run had not reported is news whatever its end time.
func TestAnEndInTheFutureAtFirstSight(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "OOMKilled")
	status := hog.Running(1) // instance 0 ended at T0+30s
	now := podtest.T0.Add(20 * time.Second)

	tr := New(16)
	tr.Resume(Horizon{At: podtest.T0.Add(10 * time.Second), Ended: []termination.Key{}})
	assert.Equal(t, Observed{HistoryOOMKills: 1}, tr.Upsert(podWith("u1", status), now))

	later := New(16)
	later.Resume(Horizon{At: podtest.T0.Add(10 * time.Second), Ended: []termination.Key{}})
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, later.Upsert(podWith("u1", status), podtest.T0.Add(40*time.Second)))

	resumed := New(16)
	resumed.Resume(Horizon{At: podtest.T0.Add(10 * time.Second), Ended: []termination.Key{}, Reported: []Reported{{PodUID: "u1", Unended: map[string]int64{"hog": 0}}}})
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, resumed.Upsert(podWith("u1", status), now))
}

// The earlier run had reported instance 1's end and never saw instance 2's, lost in back-off
// before it last looked; the next run first sees the kubelet's default status, which cannot name
// the instance. The end is not the one that run reported: it is instance 2's, and news.
func TestResumeTellsTheDefaultStatusEnd(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "Error", "Error", "OOMKilled")
	lost := hog.BackoffLost(2) // instance 2 ended at T0+2m30s
	tr := New(16)
	tr.Resume(Horizon{At: podtest.T0.Add(3 * time.Minute), Ended: []termination.Key{}, Reported: []Reported{{
		PodUID: "u1", Unended: map[string]int64{"hog": 2}, Ended: map[string]string{"hog": "containerd://hog-1"},
	}}})
	assert.Equal(t, Observed{Terminations: 1, OOMKills: 1}, tr.Upsert(podWith("u1", lost), podtest.T0.Add(5*time.Minute)))
	tr.Drain(podtest.T0.Add(6*time.Minute), func(_ *Pod, c *Container, _ []Point) {
		require.Len(t, c.Kills(), 1)
		assert.Equal(t, int64(2), c.Kills()[0].Instance)
	})
}

func TestHorizonRecord(t *testing.T) {
	t.Parallel()
	at := podtest.T0.Add(1234567 * time.Nanosecond)
	for _, h := range []Horizon{
		{At: at},
		{At: at, Ended: []termination.Key{}},
		{At: at, Ended: []termination.Key{{ContainerID: "containerd://a"}}, Reported: []Reported{{PodUID: "u", Unended: map[string]int64{"c": 4}}}},
	} {
		b, err := h.MarshalBinary()
		require.NoError(t, err)
		var got Horizon
		require.NoError(t, got.UnmarshalBinary(b))
		assert.True(t, h.At.Equal(got.At))
		assert.Equal(t, h.Ended, got.Ended)
		assert.Equal(t, h.Reported, got.Reported)
	}
	// A record of an earlier version: the time, then the terminations of its second as an array.
	old := append(binary.LittleEndian.AppendUint64(nil, uint64(at.UnixNano())), `[{"ContainerID":"containerd://a","Instance":0,"FinishedAt":0}]`...)
	var got Horizon
	require.NoError(t, got.UnmarshalBinary(old))
	assert.Equal(t, []termination.Key{{ContainerID: "containerd://a"}}, got.Ended)
	assert.Error(t, got.UnmarshalBinary([]byte{1, 2, 3}))
	assert.Error(t, got.UnmarshalBinary(append(binary.LittleEndian.AppendUint64(nil, 1), '{')))
}

// A drain whose horizon could not be recorded hands nothing out: the points wait for the next.
func TestDrainWaitsForTheRecord(t *testing.T) {
	t.Parallel()
	hog := podtest.NewLife("hog", "OOMKilled")
	tr := New(16)
	tr.Upsert(podWith("u1", hog.Running(0)), podtest.T0)
	tr.Upsert(podWith("u1", hog.Terminated(0)), podtest.T0.Add(time.Second))
	failed := errors.New("disk full")
	emitted := 0
	err := tr.DrainRecorded(podtest.T0.Add(2*time.Second), func(Horizon, Pending) error { return failed }, func(*Pod, *Container, []Point) { emitted++ })
	require.ErrorIs(t, err, failed)
	assert.Zero(t, emitted)
	assert.Equal(t, []Point{pt(0, false, podtest.T0), pt(0, true, podtest.T0.Add(time.Second))}, drain(tr, podtest.T0.Add(3*time.Second))[0].points)
}

// FuzzHorizonRecord decodes any bytes as a stored horizon: never a panic; a record that decodes
// encodes back to one that decodes the same.
func FuzzHorizonRecord(f *testing.F) {
	at := binary.LittleEndian.AppendUint64(nil, uint64(podtest.T0.UnixNano()))
	f.Add(at)
	f.Add(append(append([]byte(nil), at...), `[{"ContainerID":"containerd://a","Instance":0,"FinishedAt":0}]`...))
	f.Add(append(append([]byte(nil), at...), `{"ended":[],"reported":[{"pod_uid":"u","unended":{"c":3}}]}`...))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Horizon
		if err := h.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded horizon does not encode: %v", err)
		}
		var got Horizon
		if err := got.UnmarshalBinary(again); err != nil {
			t.Fatalf("an encoded horizon does not decode: %v", err)
		}
		if !got.At.Equal(h.At) || len(got.Ended) != len(h.Ended) || len(got.Reported) != len(h.Reported) {
			t.Fatalf("round trip changed %+v into %+v", h, got)
		}
	})
}

// BenchmarkHorizonAtAFullNode is the horizon a scrape records with storage on a node at its pod
// limit (110 pods of 3 containers): taken under the tracker's lock, then encoded.
func BenchmarkHorizonAtAFullNode(b *testing.B) {
	tr := New(16)
	for i := range 110 {
		var statuses []corev1.ContainerStatus
		for _, name := range []string{"app", "sidecar", "proxy"} {
			statuses = append(statuses, podtest.NewLife(name, "OOMKilled", "Error").Running(2))
		}
		tr.Upsert(podWith(fmt.Sprintf("5c1d3e0a-8f2b-4c7e-9a61-%012d", i), statuses...), podtest.T0.Add(5*time.Minute))
	}
	at := podtest.T0.Add(10 * time.Minute)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		tr.mu.Lock()
		h := tr.horizonAt(at)
		tr.mu.Unlock()
		rec, err := h.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		size = len(rec)
	}
	b.ReportMetric(float64(size), "bytes/record")
}
