// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomscope

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/cgroupoom"
)

var t0 = time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)

// history has a reading every 10 s from t0: the pod "p" with its hits, and the allocatable's.
func history(v1 bool, readings ...[3]uint64) *History {
	var h History
	for i, r := range readings {
		h.Add(t0.Add(time.Duration(i)*10*time.Second), cgroupoom.Limits{
			Pods:        map[string]cgroupoom.LimitHits{"p": {Own: r[0], Below: r[1]}},
			Allocatable: r[2],
			V1:          v1,
		})
	}
	return &h
}

// killAt is a container's end at t0+s, to the second, bounded as the scraper bounds it: a second
// before for the exit that followed the kill, a second after for the truncation.
func killAt(s int) Kill {
	at := t0.Add(time.Duration(s) * time.Second)
	return Kill{PodUID: "p", After: at.Add(-time.Second), Before: at.Add(time.Second)}
}

func TestScope(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		v1       bool
		readings [][3]uint64
		kill     Kill
		want     Scope
	}{
		{"v2: a container's limit", false, [][3]uint64{{0, 0, 0}, {0, 1, 0}}, killAt(4), Container},
		{"v2: the pod's own limit", false, [][3]uint64{{0, 0, 0}, {1, 0, 0}}, func() Kill { k := killAt(4); k.PodLimit = true; return k }(), Pod},
		{"v2: the pod's derived limit is its containers'", false, [][3]uint64{{0, 0, 0}, {1, 0, 0}}, killAt(4), Container},
		{"v2: node allocatable", false, [][3]uint64{{0, 0, 3}, {0, 0, 4}}, killAt(4), NodeAllocatable},
		{"v2: outermost of several", false, [][3]uint64{{0, 0, 3}, {1, 1, 4}}, killAt(4), NodeAllocatable},
		{"v2: no limit hit, the node ran out", false, [][3]uint64{{2, 2, 2}, {2, 2, 2}}, killAt(4), Node},
		{"v1: the pod's failcnt, a pod limit", true, [][3]uint64{{5, 0, 0}, {9, 0, 0}}, func() Kill { k := killAt(4); k.PodLimit = true; return k }(), Pod},
		{"v1: the pod's failcnt, no pod limit", true, [][3]uint64{{5, 0, 0}, {9, 0, 0}}, killAt(4), Container},
		{"v1: kubepods failcnt", true, [][3]uint64{{5, 0, 7}, {6, 0, 8}}, killAt(4), NodeAllocatable},
		// Only the interval around the kill counts: the pod's limit was hit in an earlier one.
		{"an earlier interval's hit", false, [][3]uint64{{0, 0, 0}, {1, 0, 0}, {1, 1, 0}}, func() Kill { k := killAt(15); k.PodLimit = true; return k }(), Container},
		// A kill at a reading's second: both intervals around that reading count.
		{"the readings' second", false, [][3]uint64{{0, 0, 0}, {1, 0, 0}, {1, 0, 0}}, func() Kill { k := killAt(10); k.PodLimit = true; return k }(), Pod},
	} {
		got, ok := history(c.v1, c.readings...).Scope(c.kill)
		if assert.True(t, ok, c.name) {
			assert.Equal(t, c.want, got, c.name)
		}
	}
}

func TestScopeUnknown(t *testing.T) {
	t.Parallel()
	h := history(false, [3]uint64{0, 0, 0}, [3]uint64{1, 0, 0})
	for name, k := range map[string]Kill{
		"before the first reading": {PodUID: "p", After: t0.Add(-time.Second), Before: t0.Add(time.Second)},
		"after the last reading":   killAt(12),
		"another pod":              {PodUID: "q", After: t0.Add(time.Second), Before: t0.Add(2 * time.Second)},
		"over the last reading":    killAt(10),
	} {
		_, ok := h.Scope(k)
		assert.False(t, ok, name)
	}
	var empty History
	_, ok := empty.Scope(killAt(1))
	assert.False(t, ok)
	// cgroup v1: nothing above the container rose. Its own limit or the node running out: the
	// counts cannot tell.
	_, ok = history(true, [3]uint64{5, 0, 7}, [3]uint64{5, 0, 7}).Scope(killAt(4))
	assert.False(t, ok, "v1, no count rose")
}

// TestHistoryKeepsTheLastReadings: older readings go, so a kill older than they is unknown.
func TestHistoryKeepsTheLastReadings(t *testing.T) {
	t.Parallel()
	rs := make([][3]uint64, 3*keep)
	for i := range rs {
		rs[i] = [3]uint64{uint64(i), 0, 0}
	}
	h := history(false, rs...)
	_, ok := h.Scope(killAt(25))
	assert.False(t, ok, "readings of a kill 2 keeps ago are gone")
	last := (3*keep - 2) * 10
	got, ok := h.Scope(func() Kill { k := killAt(last + 3); k.PodLimit = true; return k }())
	assert.True(t, ok)
	assert.Equal(t, Pod, got)
}

// FuzzScope: whatever the readings and the kill's bounds, Scope names one of the four scopes or
// none, and names none when no reading precedes the kill.
func FuzzScope(f *testing.F) {
	f.Add(uint64(0), uint64(1), uint64(0), uint64(0), uint64(0), uint64(1), int64(4), int64(1), false, true)
	f.Fuzz(func(t *testing.T, own0, own1, below0, below1, alloc0, alloc1 uint64, at, width int64, podLimit, v1 bool) {
		var h History
		h.Add(t0, cgroupoom.Limits{Pods: map[string]cgroupoom.LimitHits{"p": {Own: own0, Below: below0}}, Allocatable: alloc0, V1: v1})
		h.Add(t0.Add(10*time.Second), cgroupoom.Limits{Pods: map[string]cgroupoom.LimitHits{"p": {Own: own1, Below: below1}}, Allocatable: alloc1, V1: v1})
		after := t0.Add(time.Duration(at%30) * time.Second)
		k := Kill{PodUID: "p", After: after, Before: after.Add(time.Duration(width%20) * time.Second), PodLimit: podLimit}
		got, ok := h.Scope(k)
		if !ok {
			return
		}
		switch got {
		case Container, Pod, NodeAllocatable, Node:
		default:
			t.Fatalf("scope %q", got)
		}
		if k.After.Before(t0) {
			t.Fatalf("a scope for a kill before the first reading")
		}
		if got == Pod && !podLimit {
			t.Fatalf("pod scope for a pod without a limit of its own")
		}
		if got == Node && v1 {
			t.Fatalf("node scope on cgroup v1, whose counts cannot show it")
		}
	})
}

func TestOfReport(t *testing.T) {
	t.Parallel()
	const pod = "/kubepods/burstable/podu1"
	const task = pod + "/c1"
	for _, c := range []struct {
		name             string
		oomMemcg         string
		global, podLimit bool
		want             Scope
		ok               bool
	}{
		{"the container's cgroup", task, false, false, Container, true},
		{"the pod's cgroup, no pod limit", pod, false, false, Container, true},
		{"the pod's cgroup, a pod limit", pod, false, true, Pod, true},
		{"a QoS folder", "/kubepods/burstable", false, false, NodeAllocatable, true},
		{"kubepods", "/kubepods", false, true, NodeAllocatable, true},
		{"the node", "", true, false, Node, true},
		{"not above the victim", "/kubepods/besteffort/podu2", false, false, "", false},
	} {
		got, ok := OfReport(c.oomMemcg, task, c.global, c.podLimit)
		assert.Equal(t, c.ok, ok, c.name)
		assert.Equal(t, c.want, got, c.name)
	}
}
