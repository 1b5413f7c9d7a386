// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package cgroupoom

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
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

// TestReadMemoryPressure: on v2, a container's memory stall totals come with its kill count,
// from memory.pressure; unknown without the file (PSI off) or with one that does not parse.
func TestReadMemoryPressure(t *testing.T) {
	v2 := v2Tree(t)
	pod := "kubepods.slice/kubepods-pod" + systemdUID(uid(1)) + ".slice/"
	with := pod + "cri-containerd-" + id(1, 1) + ".scope"
	v2.cgroup(with, 5)
	v2.file(with+"/memory.pressure", "some avg10=1.50 avg60=0.40 avg300=0.10 total=2500000\nfull avg10=0.80 avg60=0.20 avg300=0.05 total=1250000\n")
	without := pod + "cri-containerd-" + id(1, 2) + ".scope"
	v2.cgroup(without, 6)
	garbled := pod + "cri-containerd-" + id(1, 3) + ".scope"
	v2.cgroup(garbled, 7)
	v2.file(garbled+"/memory.pressure", "some avg10=1.50 total=x\n")
	got, err := v2.reader().Read([]Instance{
		{PodUID: uid(1), ContainerID: id(1, 1)}, {PodUID: uid(1), ContainerID: id(1, 2)}, {PodUID: uid(1), ContainerID: id(1, 3)},
	})
	require.NoError(t, err, "the kill counts are read")
	assert.Equal(t, Counts{Kills: 5, LimitHits: 41, HasLimitHits: true, StallSome: 2_500_000, StallFull: 1_250_000, HasStall: true}, got[id(1, 1)])
	assert.Equal(t, Counts{Kills: 6, LimitHits: 41, HasLimitHits: true}, got[id(1, 2)], "no memory.pressure")
	assert.Equal(t, Counts{Kills: 7, LimitHits: 41, HasLimitHits: true}, got[id(1, 3)], "a memory.pressure that does not parse")
}

// TestReadMemoryPressureSkipped: a reader told to skip memory.pressure reads the kill counts
// alone.
func TestReadMemoryPressureSkipped(t *testing.T) {
	v2 := v2Tree(t)
	dir := "kubepods.slice/kubepods-pod" + systemdUID(uid(1)) + ".slice/cri-containerd-" + id(1, 1) + ".scope"
	v2.cgroup(dir, 5)
	v2.file(dir+"/memory.pressure", "some avg10=1.50 avg60=0.40 avg300=0.10 total=2500000\nfull avg10=0.80 avg60=0.20 avg300=0.05 total=1250000\n")
	r := v2.reader()
	r.SkipPressure()
	got, err := r.Read([]Instance{{PodUID: uid(1), ContainerID: id(1, 1)}})
	require.NoError(t, err)
	assert.Equal(t, Counts{Kills: 5, LimitHits: 41, HasLimitHits: true}, got[id(1, 1)])
}

func TestParsePressure(t *testing.T) {
	for _, tc := range []struct {
		in         string
		some, full uint64
		err        bool
	}{
		{"some avg10=0.00 avg60=0.00 avg300=0.00 total=6219523\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=4455944\n", 6219523, 4455944, false},
		{"full avg10=0.00 total=2\nsome avg10=0.00 total=1", 1, 2, false},
		{"some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n", 0, 0, true},
		{"some total=1\nsome total=2\nfull total=3\n", 0, 0, true},
		{"some avg10=0.00\nfull total=3\n", 0, 0, true},
		{"some total=-1\nfull total=3\n", 0, 0, true},
		{"", 0, 0, true},
	} {
		some, full, err := parsePressure([]byte(tc.in))
		if tc.err {
			assert.Error(t, err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, [2]uint64{tc.some, tc.full}, [2]uint64{some, full}, "%q", tc.in)
	}
}

// FuzzParsePressure checks parsePressure against a plain implementation: exactly one line whose
// first field is some and one whose first is full, each with a last total= field strconv reads
// as a base-10 uint64.
func FuzzParsePressure(f *testing.F) {
	for _, s := range []string{
		"some avg10=0.00 avg60=0.00 avg300=0.00 total=6219523\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=4455944\n",
		"some total=1\nsome total=2\nfull total=3\n", "some total=\nfull total=1", "full total=1 total=2\nsome total=3",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		some, full, err := parsePressure(b)
		totals := map[string][]string{}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || (fields[0] != "some" && fields[0] != "full") {
				continue
			}
			total, ok := "", false
			for _, f := range fields[1:] {
				if v, cut := strings.CutPrefix(f, "total="); cut {
					total, ok = v, true
				}
			}
			if !ok {
				total = "none"
			}
			totals[fields[0]] = append(totals[fields[0]], total)
		}
		if len(totals["some"]) != 1 || len(totals["full"]) != 1 {
			if err == nil {
				t.Fatalf("%q: lines %v, but no error", b, totals)
			}
			return
		}
		wantSome, errSome := strconv.ParseUint(totals["some"][0], 10, 64)
		wantFull, errFull := strconv.ParseUint(totals["full"][0], 10, 64)
		wantErr := errSome != nil || errFull != nil
		if (err != nil) != wantErr || err == nil && (some != wantSome || full != wantFull) {
			t.Fatalf("%q: got %d, %d, %v; strconv: %d %v, %d %v", b, some, full, err, wantSome, errSome, wantFull, errFull)
		}
	})
}
