// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package cgroupoom

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failcnt writes a v1 cgroup's memory.failcnt, relative to the memory hierarchy.
func (tr *tree) failcnt(rel string, n uint64) {
	tr.t.Helper()
	tr.file(filepath.Join("memory", rel, v1FailcntFile), fmt.Sprintf("%d\n", n))
}

// oom writes a v2 cgroup's "oom" counts: own in memory.events.local, own+below in memory.events.
func (tr *tree) oom(rel string, own, below uint64) {
	tr.t.Helper()
	events := "low 0\nhigh 3\nmax 12\noom %d\noom_kill 2\noom_group_kill 0\n"
	tr.file(filepath.Join(rel, v2EventsLocalFile), fmt.Sprintf(events, own))
	tr.file(filepath.Join(rel, v2CounterFile), fmt.Sprintf(events, own+below))
}

func TestReadLimitsV1(t *testing.T) {
	tr := v1Tree(t)
	kubepods := "oomwatch/kubepods"
	tr.cgroup(kubepods, 0)
	tr.failcnt(kubepods, 5)
	tr.failcnt(kubepods+"/burstable", 2)
	tr.failcnt(kubepods+"/besteffort", 1)
	tr.cgroup(kubepods+"/pod"+uid(1)+"/"+id(1, 1), 0)
	tr.failcnt(kubepods+"/pod"+uid(1), 7)
	tr.cgroup(kubepods+"/burstable/pod"+uid(2)+"/"+id(2, 1), 0)
	tr.failcnt(kubepods+"/burstable/pod"+uid(2), 0)

	r := tr.reader()
	// Not asked for by Read first: ReadLimits finds the pods itself, and leaves out a pod that
	// is not there.
	got, err := r.ReadLimits([]string{uid(1), uid(2), uid(9), "../x"})
	require.NoError(t, err)
	assert.Equal(t, Limits{Pods: map[string]LimitHits{uid(1): {Own: 7, Reached: 7}, uid(2): {}}, Allocatable: 8, V1: true}, got)

	tr.failcnt(kubepods+"/pod"+uid(1), 9)
	got, err = r.ReadLimits([]string{uid(1)})
	require.NoError(t, err)
	assert.Equal(t, LimitHits{Own: 9, Reached: 9}, got.Pods[uid(1)])

	// The pod's cgroup gone: left out, not an error.
	tr.remove(kubepods + "/pod" + uid(1))
	got, err = r.ReadLimits([]string{uid(1)})
	require.NoError(t, err)
	assert.Empty(t, got.Pods)

	tr.failcnt(kubepods+"/burstable/pod"+uid(2), 1<<40)
	tr.file(filepath.Join("memory", kubepods, "burstable/pod"+uid(2), v1FailcntFile), "x\n")
	_, err = r.ReadLimits([]string{uid(2)})
	require.ErrorContains(t, err, "pod "+uid(2))
	require.ErrorContains(t, err, v1FailcntFile)
}

func TestReadLimitsV2(t *testing.T) {
	tr := v2Tree(t)
	tr.oom("kubepods.slice", 1, 10)
	tr.oom("kubepods.slice/kubepods-burstable.slice", 0, 6)
	tr.oom("kubepods.slice/kubepods-besteffort.slice", 0, 0)
	guaranteed := "kubepods.slice/kubepods-pod" + systemdUID(uid(1)) + ".slice"
	tr.cgroup(guaranteed+"/cri-containerd-"+id(1, 1)+".scope", 0)
	tr.oom(guaranteed, 2, 3)
	burstable := "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uid(2)) + ".slice"
	tr.cgroup(burstable+"/cri-containerd-"+id(2, 1)+".scope", 0)
	tr.oom(burstable, 0, 6)

	r := tr.reader()
	read(t, r, Instance{PodUID: uid(1), ContainerID: id(1, 1)})
	got, err := r.ReadLimits([]string{uid(1), uid(2)})
	require.NoError(t, err)
	assert.Equal(t, Limits{Pods: map[string]LimitHits{uid(1): {Own: 2, Below: 3, Reached: 12}, uid(2): {Below: 6, Reached: 12}}, Allocatable: 1}, got)

	tr.file(filepath.Join(guaranteed, v2EventsLocalFile), "low 0\n")
	_, err = r.ReadLimits([]string{uid(1)})
	require.ErrorContains(t, err, "no oom line")
}

func TestParseField(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"low 0\nhigh 0\nmax 4\noom 3\noom_kill 2\n", 3, ""},
		{"oom 18446744073709551615", 1<<64 - 1, ""},
		{"oom_kill 2\n", 0, "no oom line"},
		{"oom 1\noom 2\n", 0, "two oom lines"},
		{"oom -1\n", 0, "not a decimal"},
		{"oom 18446744073709551616\n", 0, "over 2^64-1"},
	} {
		got, err := parseField([]byte(c.in), "oom")
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
}

// TestReadLimitHitsOfContainers: a container's own limit hits come with its kill count: "max" of
// memory.events on v2, memory.failcnt on v1; unknown, not 0, when v1's file cannot be read.
func TestReadLimitHitsOfContainers(t *testing.T) {
	v1 := v1Tree(t)
	dir := "kubepods/burstable/pod" + uid(1)
	v1.cgroup(dir+"/"+id(1, 1), 3)
	v1.failcnt(dir+"/"+id(1, 1), 250)
	v1.cgroup(dir+"/"+id(1, 2), 4)
	got, err := v1.reader().Read([]Instance{{PodUID: uid(1), ContainerID: id(1, 1)}, {PodUID: uid(1), ContainerID: id(1, 2)}})
	require.NoError(t, err)
	assert.Equal(t, Counts{Kills: 3, LimitHits: 250, HasLimitHits: true}, got[id(1, 1)])
	assert.Equal(t, Counts{Kills: 4}, got[id(1, 2)], "no memory.failcnt")

	v2 := v2Tree(t)
	v2.cgroup("kubepods.slice/kubepods-pod"+systemdUID(uid(1))+".slice/cri-containerd-"+id(1, 1)+".scope", 5)
	got, err = v2.reader().Read([]Instance{{PodUID: uid(1), ContainerID: id(1, 1)}})
	require.NoError(t, err)
	assert.Equal(t, Counts{Kills: 5, LimitHits: 41, HasLimitHits: true}, got[id(1, 1)], `"max 41" of v2Counter`)
}
