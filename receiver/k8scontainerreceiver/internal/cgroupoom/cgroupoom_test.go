// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package cgroupoom

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A fake cgroup filesystem in a temporary folder, laid out as the kernel, the kubelet and the
// runtimes lay out a node's.

type tree struct {
	t    testing.TB
	root string
	// base is the memory hierarchy; v2 tells the counter file's format.
	base string
	v2   bool
}

// v1Tree is a cgroup v1 host's /sys/fs/cgroup: a tmpfs with one folder per hierarchy, the
// unified one (without controllers) beside them, as on hosts in systemd's hybrid mode.
func v1Tree(t testing.TB) *tree {
	tr := &tree{t: t, root: t.TempDir()}
	tr.base = filepath.Join(tr.root, "memory")
	tr.file("memory/memory.oom_control", v1Counter(0))
	tr.file("cpu/cpu.shares", "1024\n")
	tr.file("unified/cgroup.controllers", "\n")
	// Cgroups that are no pod's.
	tr.file("memory/system.slice/containerd.service/memory.oom_control", v1Counter(0))
	tr.file("memory/system.slice/kubelet.service/memory.oom_control", v1Counter(0))
	tr.file("memory/user.slice/user-0.slice/session-1.scope/memory.oom_control", v1Counter(1))
	return tr
}

// v2Tree is a cgroup v2 host's /sys/fs/cgroup.
func v2Tree(t testing.TB) *tree {
	tr := &tree{t: t, root: t.TempDir(), v2: true}
	tr.base = tr.root
	tr.file("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	tr.file("system.slice/containerd.service/memory.events", v2Counter(0))
	tr.file("init.scope/memory.events", v2Counter(0))
	return tr
}

func v1Counter(n uint64) string {
	return fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)
}

func v2Counter(n uint64) string {
	return fmt.Sprintf("low 0\nhigh 0\nmax 41\noom 7\noom_kill %d\noom_group_kill 0\n", n)
}

// file writes a file at a path relative to the root.
func (tr *tree) file(rel, content string) {
	tr.t.Helper()
	path := filepath.Join(tr.root, rel)
	require.NoError(tr.t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(tr.t, os.WriteFile(path, []byte(content), 0o644))
}

// cgroup makes a cgroup folder, relative to the memory hierarchy, with oom_kill n.
func (tr *tree) cgroup(rel string, n uint64) {
	tr.t.Helper()
	if tr.v2 {
		tr.file(filepath.Join(rel, v2CounterFile), v2Counter(n))
		tr.file(filepath.Join(rel, "memory.events.local"), v2Counter(0))
		return
	}
	rel, err := filepath.Rel(tr.root, filepath.Join(tr.base, rel))
	require.NoError(tr.t, err)
	tr.file(filepath.Join(rel, v1CounterFile), v1Counter(n))
}

// counter rewrites the oom_kill count of a cgroup made by cgroup.
func (tr *tree) counter(rel string, n uint64) { tr.cgroup(rel, n) }

func (tr *tree) remove(rel string) {
	tr.t.Helper()
	require.NoError(tr.t, os.RemoveAll(filepath.Join(tr.base, rel)))
}

func (tr *tree) reader() *Reader {
	tr.t.Helper()
	r, err := NewReader(tr.root)
	require.NoError(tr.t, err)
	return r
}

// uid makes a pod UID; id a 64-hex-digit container ID.
func uid(n int) string { return fmt.Sprintf("%08x-1111-4222-8333-%012x", n, n) }
func id(pod, c int) string {
	return fmt.Sprintf("%032x%032x", pod, c)
}

// systemdUID is a pod UID as the systemd driver spells it in slice names.
func systemdUID(u string) string { return strings.ReplaceAll(u, "-", "_") }

func read(t *testing.T, r *Reader, instances ...Instance) map[string]uint64 {
	t.Helper()
	got, err := r.Read(instances)
	require.NoError(t, err)
	return killsOf(got)
}

// killsOf are the oom_kill counts of what Read returned.
func killsOf(counts map[string]Counts) map[string]uint64 {
	out := make(map[string]uint64, len(counts))
	for id, c := range counts {
		out[id] = c.Kills
	}
	return out
}

func TestNewReader(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		tr := v1Tree(t)
		r := tr.reader()
		assert.Equal(t, tr.base, r.base)
		assert.Equal(t, v1CounterFile, r.counterFile)
	})
	t.Run("v1 memory hierarchy alone", func(t *testing.T) {
		tr := v1Tree(t)
		r, err := NewReader(tr.base)
		require.NoError(t, err)
		assert.Equal(t, tr.base, r.base)
		assert.Equal(t, v1CounterFile, r.counterFile)
	})
	t.Run("v2", func(t *testing.T) {
		tr := v2Tree(t)
		r := tr.reader()
		assert.Equal(t, tr.root, r.base)
		assert.Equal(t, v2CounterFile, r.counterFile)
	})
	t.Run("v2 without the memory controller", func(t *testing.T) {
		root := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io pids\n"), 0o644))
		_, err := NewReader(root)
		assert.ErrorContains(t, err, "memory controller is not enabled")
	})
	t.Run("the unified hierarchy of a hybrid host", func(t *testing.T) {
		tr := v1Tree(t)
		_, err := NewReader(filepath.Join(tr.root, "unified"))
		assert.ErrorContains(t, err, "memory controller is not enabled")
	})
	t.Run("v1 mount without its sub-mounts", func(t *testing.T) {
		// A bind mount of a v1 host's /sys/fs/cgroup (a tmpfs) that is not recursive shows the
		// hierarchies' mount points as empty folders.
		root := t.TempDir()
		require.NoError(t, os.Mkdir(filepath.Join(root, "memory"), 0o755))
		_, err := NewReader(root)
		assert.ErrorContains(t, err, "sub-mounts")
	})
	t.Run("neither", func(t *testing.T) {
		_, err := NewReader(t.TempDir())
		assert.ErrorContains(t, err, "neither cgroup v1")
		_, err = NewReader(filepath.Join(t.TempDir(), "absent"))
		assert.Error(t, err)
	})
}

// TestReadV1Cgroupfs: the real node's layout (kubelet --cgroup-root=/oomwatch, cgroupfs driver,
// containerd): a Guaranteed, a Burstable and a BestEffort pod, each with its sandbox's cgroup
// beside its containers'; and a CRI-O container.
func TestReadV1Cgroupfs(t *testing.T) {
	tr := v1Tree(t)
	kubepods := "oomwatch/kubepods"
	tr.cgroup(kubepods, 0)
	layout := map[int]string{1: kubepods + "/pod" + uid(1), 2: kubepods + "/burstable/pod" + uid(2), 3: kubepods + "/besteffort/pod" + uid(3)}
	var instances []Instance
	want := map[string]uint64{}
	for pod, dir := range layout {
		tr.cgroup(dir, 0)
		tr.cgroup(dir+"/"+id(pod, 0), 0) // the sandbox
		for c := 1; c <= 2; c++ {
			n := uint64(10*pod + c)
			tr.cgroup(dir+"/"+id(pod, c), n)
			instances = append(instances, Instance{PodUID: uid(pod), Container: "c" + strconv.Itoa(c), ContainerID: id(pod, c)})
			want[id(pod, c)] = n
		}
	}
	// CRI-O names a container's cgroup crio-<id> with the cgroupfs driver.
	tr.cgroup(kubepods+"/burstable/pod"+uid(4)+"/crio-"+id(4, 1), 41)
	instances = append(instances, Instance{PodUID: uid(4), Container: "app", ContainerID: id(4, 1)})
	want[id(4, 1)] = 41
	// Not there: an unknown pod, an unknown container of a known pod.
	instances = append(instances, Instance{PodUID: uid(9), ContainerID: id(9, 1)}, Instance{PodUID: uid(1), ContainerID: id(1, 9)})

	r := tr.reader()
	assert.Equal(t, want, read(t, r, instances...))
	assert.Len(t, r.kubepods, 1)
}

// TestReadV1Systemd: the systemd driver's slices and each runtime's scope names.
func TestReadV1Systemd(t *testing.T) {
	tr := v1Tree(t)
	tr.cgroup("kubepods.slice", 0)
	guaranteed := "kubepods.slice/kubepods-pod" + systemdUID(uid(1)) + ".slice"
	burstable := "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uid(2)) + ".slice"
	besteffort := "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + systemdUID(uid(3)) + ".slice"
	tr.cgroup(guaranteed+"/cri-containerd-"+id(1, 0)+".scope", 0)
	tr.cgroup(guaranteed+"/cri-containerd-"+id(1, 1)+".scope", 11)
	tr.cgroup(burstable+"/docker-"+id(2, 1)+".scope", 21)
	tr.cgroup(besteffort+"/crio-"+id(3, 1)+".scope", 31)
	// CRI-O's monitor of the same container, with a count of its own.
	tr.cgroup(besteffort+"/crio-conmon-"+id(3, 1)+".scope", 99)
	// The pod's UID with dashes is the cgroupfs driver's name, not the systemd one's.
	tr.cgroup("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+uid(4)+".slice/cri-containerd-"+id(4, 1)+".scope", 41)

	r := tr.reader()
	got := read(t, r,
		Instance{PodUID: uid(1), ContainerID: id(1, 1)},
		Instance{PodUID: uid(2), ContainerID: id(2, 1)},
		Instance{PodUID: uid(3), ContainerID: id(3, 1)},
		Instance{PodUID: uid(4), ContainerID: id(4, 1)},
	)
	assert.Equal(t, map[string]uint64{id(1, 1): 11, id(2, 1): 21, id(3, 1): 31}, got)
}

// TestReadV2Systemd: cgroup v2 with the systemd driver, on a plain node and on a kind node
// (slices named kubelet-kubepods...). memory.events counts kills in the container's cgroup
// and below it.
func TestReadV2Systemd(t *testing.T) {
	tr := v2Tree(t)
	plain := "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uid(1)) + ".slice"
	tr.cgroup(plain+"/cri-containerd-"+id(1, 1)+".scope", 11)
	tr.cgroup(plain+"/cri-containerd-"+id(1, 1)+".scope/nested", 3) // included in the scope's 11
	kind := "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + systemdUID(uid(2)) + ".slice"
	tr.cgroup(kind+"/cri-containerd-"+id(2, 1)+".scope", 21)
	guaranteedKind := "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + systemdUID(uid(3)) + ".slice"
	tr.cgroup(guaranteedKind+"/cri-containerd-"+id(3, 1)+".scope", 31)

	r := tr.reader()
	got := read(t, r,
		Instance{PodUID: uid(1), ContainerID: id(1, 1)},
		Instance{PodUID: uid(2), ContainerID: id(2, 1)},
		Instance{PodUID: uid(3), ContainerID: id(3, 1)},
	)
	assert.Equal(t, map[string]uint64{id(1, 1): 11, id(2, 1): 21, id(3, 1): 31}, got)
	assert.Len(t, r.kubepods, 2)
}

// TestReadKubepodsDepth: kubepods is looked for at most maxKubepodsDepth levels down.
func TestReadKubepodsDepth(t *testing.T) {
	tr := v1Tree(t)
	tr.cgroup("a/b/kubepods/pod"+uid(1)+"/"+id(1, 1), 11)
	tr.cgroup("a/b/c/kubepods/pod"+uid(2)+"/"+id(2, 1), 21)
	got := read(t, tr.reader(), Instance{PodUID: uid(1), ContainerID: id(1, 1)}, Instance{PodUID: uid(2), ContainerID: id(2, 1)})
	assert.Equal(t, map[string]uint64{id(1, 1): 11}, got)
}

// node110x3 makes a node of 110 Burstable pods of 3 containers each (and a sandbox each).
func node110x3(tr *tree) []Instance {
	var instances []Instance
	for pod := 1; pod <= 110; pod++ {
		dir := "kubepods/burstable/pod" + uid(pod)
		tr.cgroup(dir+"/"+id(pod, 0), 0)
		for c := 1; c <= 3; c++ {
			tr.cgroup(dir+"/"+id(pod, c), uint64(pod*c))
			instances = append(instances, Instance{PodUID: uid(pod), Container: "c" + strconv.Itoa(c), ContainerID: id(pod, c)})
		}
	}
	return instances
}

// TestReadCaches: a second Read of the same instances searches nothing and reads the counters
// afresh; a Read forgets the instances it was not asked for.
func TestReadCaches(t *testing.T) {
	tr := v1Tree(t)
	instances := node110x3(tr)
	r := tr.reader()
	first := read(t, r, instances...)
	require.Len(t, first, 330)
	assert.Equal(t, uint64(2*3), first[id(2, 3)])
	// The first Read walked the hierarchy once, found each pod with a stat or two and listed
	// each pod's cgroup once for its three containers.
	searched := r.searches
	assert.Less(t, searched, 110*4+20, "searches of the first Read")
	assert.Len(t, r.pods, 110)
	assert.Len(t, r.containers, 330)

	tr.counter("kubepods/burstable/pod"+uid(2)+"/"+id(2, 3), 1000)
	second := read(t, r, instances...)
	assert.Equal(t, searched, r.searches, "the second Read searched")
	assert.Equal(t, uint64(1000), second[id(2, 3)], "the counter is read afresh")
	assert.Len(t, second, 330)

	// Pods 1-10 only: the others are forgotten.
	subset := instances[:30]
	assert.Len(t, read(t, r, subset...), 30)
	assert.Equal(t, searched, r.searches)
	assert.Len(t, r.pods, 10)
	assert.Len(t, r.containers, 30)

	// Pod 11 again: searched for again.
	assert.Len(t, read(t, r, instances[:33]...), 33)
	assert.Greater(t, r.searches, searched)
}

// TestReadNewInstanceOfKnownPod: a restarted container (new ID) in a pod already found costs
// one listing of the pod's cgroup, nothing more.
func TestReadNewInstanceOfKnownPod(t *testing.T) {
	tr := v1Tree(t)
	pod := "kubepods/besteffort/pod" + uid(1)
	tr.cgroup(pod+"/"+id(1, 1), 1)
	r := tr.reader()
	assert.Equal(t, map[string]uint64{id(1, 1): 1}, read(t, r, Instance{PodUID: uid(1), ContainerID: id(1, 1)}))

	// The instance ends, its cgroup goes; the next one starts.
	tr.remove(pod + "/" + id(1, 1))
	tr.cgroup(pod+"/"+id(1, 2), 0)
	before := r.searches
	assert.Equal(t, map[string]uint64{id(1, 2): 0}, read(t, r, Instance{PodUID: uid(1), ContainerID: id(1, 2)}))
	assert.Equal(t, before+1, r.searches)
	assert.NotContains(t, r.containers, id(1, 1))
}

// TestReadVanished: cgroups that go away between two Reads, or between the search and the
// read, are left out, with no error, and their cache entries dropped.
func TestReadVanished(t *testing.T) {
	tr := v2Tree(t)
	pod1 := "kubepods.slice/kubepods-pod" + systemdUID(uid(1)) + ".slice"
	pod2 := "kubepods.slice/kubepods-pod" + systemdUID(uid(2)) + ".slice"
	tr.cgroup(pod1+"/cri-containerd-"+id(1, 1)+".scope", 1)
	tr.cgroup(pod1+"/cri-containerd-"+id(1, 2)+".scope", 2)
	tr.cgroup(pod2+"/cri-containerd-"+id(2, 1)+".scope", 3)
	instances := []Instance{{PodUID: uid(1), ContainerID: id(1, 1)}, {PodUID: uid(1), ContainerID: id(1, 2)}, {PodUID: uid(2), ContainerID: id(2, 1)}}
	r := tr.reader()
	require.Len(t, read(t, r, instances...), 3)

	// A container's cgroup, then a whole pod's.
	tr.remove(pod1 + "/cri-containerd-" + id(1, 2) + ".scope")
	assert.Equal(t, map[string]uint64{id(1, 1): 1, id(2, 1): 3}, read(t, r, instances...))
	assert.NotContains(t, r.containers, id(1, 2))
	tr.remove(pod2)
	assert.Equal(t, map[string]uint64{id(1, 1): 1}, read(t, r, instances...))
	assert.NotContains(t, r.containers, id(2, 1))

	// A pod's cgroup that goes between the stat that finds it and its listing.
	r = tr.reader()
	r.pods[uid(1)] = &podCgroup{dir: filepath.Join(tr.base, "kubepods.slice", "gone.slice")}
	assert.Equal(t, map[string]uint64{}, read(t, r, instances[:1]...))
	assert.NotContains(t, r.pods, uid(1))
}

// TestGone: what says a cgroup is not there. The kernel answers ENODEV for a cgroup it is
// removing, which a temporary folder cannot play.
func TestGone(t *testing.T) {
	pathErr := func(errno syscall.Errno) error {
		return &fs.PathError{Op: "open", Path: "/sys/fs/cgroup/memory/x/memory.oom_control", Err: errno}
	}
	assert.True(t, gone(pathErr(syscall.ENOENT)))
	assert.True(t, gone(pathErr(syscall.ENODEV)))
	assert.True(t, gone(fmt.Errorf("wrapped: %w", pathErr(syscall.ENODEV))))
	assert.False(t, gone(pathErr(syscall.EACCES)))
	assert.False(t, gone(errors.New("oom_kill: not a number")))
	assert.False(t, gone(nil))
}

// TestReadKubepodsLater: a Reader that starts before the kubelet has made its kubepods
// cgroup finds it at most rewalkEvery later.
func TestReadKubepodsLater(t *testing.T) {
	tr := v1Tree(t)
	r := tr.reader()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	in := Instance{PodUID: uid(1), ContainerID: id(1, 1)}
	assert.Empty(t, read(t, r, in))
	assert.Empty(t, r.kubepods)

	tr.cgroup("kubepods/pod"+uid(1)+"/"+id(1, 1), 5)
	now = now.Add(rewalkEvery / 2)
	before := r.searches
	assert.Empty(t, read(t, r, in))
	assert.Equal(t, before, r.searches, "a walk within rewalkEvery of the last")
	now = now.Add(rewalkEvery / 2)
	assert.Equal(t, map[string]uint64{id(1, 1): 5}, read(t, r, in))
}

// TestReadWalkPermission: a folder the reader may not list, on the way to the only kubepods
// cgroup, is an error, where a folder it may not list beside the kubepods cgroup is not. (The
// tests may run as root, whom permissions do not stop, so the refusal is played.)
func TestReadWalkPermission(t *testing.T) {
	tr := v1Tree(t)
	tr.cgroup("oomwatch/kubepods/pod"+uid(1)+"/"+id(1, 1), 1)
	in := Instance{PodUID: uid(1), ContainerID: id(1, 1)}
	refuse := func(name string) func(string) ([]fs.DirEntry, error) {
		return func(dir string) ([]fs.DirEntry, error) {
			if filepath.Base(dir) == name {
				return nil, &fs.PathError{Op: "open", Path: dir, Err: syscall.EACCES}
			}
			return listDir(dir)
		}
	}

	r := tr.reader()
	r.listDir = refuse("oomwatch")
	got, err := r.Read([]Instance{in, {PodUID: uid(2), ContainerID: id(2, 1)}})
	assert.Empty(t, got)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.ErrorContains(t, err, "no kubepods cgroup found under "+tr.base+": open "+filepath.Join(tr.base, "oomwatch")+": permission denied")
	assert.Equal(t, 1, strings.Count(err.Error(), "permission denied"), "one walk, one error: %v", err)

	r = tr.reader()
	r.listDir = refuse("system.slice")
	assert.Equal(t, map[string]uint64{id(1, 1): 1}, read(t, r, in))

	// A pod's cgroup it may not list.
	r = tr.reader()
	r.listDir = refuse("pod" + uid(1))
	_, err = r.Read([]Instance{in})
	assert.ErrorIs(t, err, fs.ErrPermission)
}

// TestReadWalksOncePerRead: many pods not found walk the hierarchy once.
func TestReadWalksOncePerRead(t *testing.T) {
	tr := v1Tree(t)
	tr.cgroup("kubepods/pod"+uid(1)+"/"+id(1, 1), 1)
	r := tr.reader()
	instances := []Instance{{PodUID: uid(1), ContainerID: id(1, 1)}}
	for pod := 2; pod <= 50; pod++ {
		instances = append(instances, Instance{PodUID: uid(pod), ContainerID: id(pod, 1)})
	}
	assert.Equal(t, map[string]uint64{id(1, 1): 1}, read(t, r, instances...))
	// One walk (a handful of listings), three stats per pod before it and after it.
	assert.Less(t, r.searches, 20+50*3*2)
	assert.Len(t, r.pods, 1)
}

// TestReadMalformed: an instance whose counter file cannot be parsed is left out, with an
// error that names the file; the other instances are read.
func TestReadMalformed(t *testing.T) {
	tr := v1Tree(t)
	pod := "kubepods/pod" + uid(1)
	tr.cgroup(pod+"/"+id(1, 1), 1)
	tr.cgroup(pod+"/"+id(1, 2), 2)
	tr.cgroup(pod+"/"+id(1, 3), 3)
	// A kernel before 4.13 has no oom_kill line; a torn or foreign file.
	tr.file("memory/"+pod+"/"+id(1, 2)+"/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")
	tr.file("memory/"+pod+"/"+id(1, 3)+"/memory.oom_control", "oom_kill x\n")
	r := tr.reader()
	got, err := r.Read([]Instance{{PodUID: uid(1), ContainerID: id(1, 1)}, {PodUID: uid(1), ContainerID: id(1, 2)}, {PodUID: uid(1), ContainerID: id(1, 3)}})
	assert.Equal(t, map[string]uint64{id(1, 1): 1}, killsOf(got))
	require.Error(t, err)
	assert.ErrorIs(t, err, errNoOOMKill)
	assert.ErrorIs(t, err, errNotDecimal)
	assert.ErrorContains(t, err, filepath.Join(tr.base, pod, id(1, 2), "memory.oom_control")+": no oom_kill line")
	assert.ErrorContains(t, err, filepath.Join(tr.base, pod, id(1, 3), "memory.oom_control")+`: oom_kill "x": not a decimal number`)
}

// TestReadOddNames: names that cannot be a UID or an ID are not looked for.
func TestReadOddNames(t *testing.T) {
	tr := v1Tree(t)
	tr.cgroup("kubepods/pod"+uid(1)+"/"+id(1, 1), 1)
	r := tr.reader()
	got := read(t, r,
		Instance{PodUID: "", ContainerID: id(1, 1)},
		Instance{PodUID: uid(1), ContainerID: ""},
		Instance{PodUID: uid(1), ContainerID: ".."},
		Instance{PodUID: "../../x", ContainerID: id(1, 1)},
		Instance{PodUID: uid(1), ContainerID: "containerd://" + id(1, 1)},
	)
	assert.Empty(t, got)
	assert.Zero(t, r.searches)
}

func TestIsContainerCgroup(t *testing.T) {
	const c = "0123abcd"
	for name, want := range map[string]bool{
		c:                                 true,
		"crio-" + c:                       true,
		"cri-containerd-" + c + ".scope":  true,
		"crio-" + c + ".scope":            true,
		"docker-" + c + ".scope":          true,
		"crio-conmon-" + c + ".scope":     false,
		"cri-containerd-" + c:             false,
		c + ".scope":                      false,
		"cri-containerd-" + c + "0.scope": false,
		"pod" + c:                         false,
		"":                                false,
	} {
		assert.Equal(t, want, isContainerCgroup(name, c), name)
	}
}

func TestParseOOMKill(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  string
	}{
		{in: v1Counter(0)},
		{in: v1Counter(17), want: 17},
		{in: v2Counter(3), want: 3},
		{in: "oom_kill 18446744073709551615", want: 1<<64 - 1},
		{in: "oom_kill 007\n", want: 7},
		{in: "", err: "no oom_kill line"},
		{in: "oom_kill_disable 0\nunder_oom 0\n", err: "no oom_kill line"},
		{in: "oom_kill\n", err: "no oom_kill line"},
		{in: "oom_kill \n", err: "not a decimal number"},
		{in: "oom_kill -1\n", err: "not a decimal number"},
		{in: "oom_kill 1 \n", err: "not a decimal number"},
		{in: "oom_kill 1\r\n", err: "not a decimal number"},
		{in: "oom_kill 18446744073709551616\n", err: "over 2^64-1"},
		{in: "oom_kill 1\noom_kill 1\n", err: "two oom_kill lines"},
	} {
		got, err := parseOOMKill([]byte(tc.in))
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, "%q", tc.in)
			continue
		}
		if assert.NoError(t, err, "%q", tc.in) {
			assert.Equal(t, tc.want, got, "%q", tc.in)
		}
	}
}

// FuzzParseOOMKill checks parseOOMKill against a plain implementation: exactly one line
// starting "oom_kill ", whose rest strconv reads as a base-10 uint64.
func FuzzParseOOMKill(f *testing.F) {
	for _, s := range []string{
		v1Counter(0), v1Counter(123), v2Counter(9), "", "oom_kill 1", "oom_kill 1\noom_kill 2\n",
		"oom_kill_disable 1\n", "oom_kill +1\n", "oom_kill 1_0\n", "oom_kill 99999999999999999999\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseOOMKill(b)
		var values []string
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				values = append(values, v)
			}
		}
		if len(values) != 1 {
			if err == nil {
				t.Fatalf("%q: %d oom_kill lines, but %d and no error", b, len(values), got)
			}
			return
		}
		want, wantErr := strconv.ParseUint(values[0], 10, 64)
		if (err != nil) != (wantErr != nil) || err == nil && got != want {
			t.Fatalf("%q: got %d, %v; strconv: %d, %v", b, got, err, want, wantErr)
		}
	})
}

// FuzzParseGroupKill checks parseGroupKill against a plain implementation: the first line
// starting "oom_group_kill ", whose rest strconv reads as a base-10 uint64; none is 0.
func FuzzParseGroupKill(f *testing.F) {
	for _, s := range []string{
		v2Counter(9), "oom_kill 6\noom_group_kill 1\n", "oom_group_kill 2\noom_group_kill x\n", "oom_group_kill \n",
		"oom_group_kill 99999999999999999999\n", "oom_group_killed 1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseGroupKill(b)
		var want uint64
		var wantErr error
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_group_kill "); ok {
				want, wantErr = strconv.ParseUint(v, 10, 64)
				break
			}
		}
		if (err != nil) != (wantErr != nil) || err == nil && got != want {
			t.Fatalf("%q: got %d, %v; strconv: %d, %v", b, got, err, want, wantErr)
		}
	})
}

// BenchmarkRead330 is a steady scrape of a node of 110 pods of 3 containers: every cgroup in
// the caches, one counter file read per container.
func BenchmarkRead330(b *testing.B) {
	tr := v1Tree(b)
	instances := node110x3(tr)
	r := tr.reader()
	got, err := r.Read(instances)
	require.NoError(b, err)
	require.Len(b, got, 330)
	searched := r.searches
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Read(instances); err != nil {
			b.Fatal(err)
		}
	}
	require.Equal(b, searched, r.searches)
}

// TestHostRead reads real containers' counts for the end-to-end tests (internal/cluster/e2e), which
// cannot import this package: OOMWATCH_CGROUPOOM_ROOT names the cgroup filesystem and
// OOMWATCH_CGROUPOOM_INSTANCES the instances (JSON), and the test prints what two Reads in a
// row returned, their errors, the searches and time each took, on a line of its own, for the
// end-to-end test to judge. Skipped without them.
func TestHostRead(t *testing.T) {
	root := os.Getenv("OOMWATCH_CGROUPOOM_ROOT")
	if root == "" {
		t.Skip("OOMWATCH_CGROUPOOM_ROOT is not set: only the end-to-end tests run this")
	}
	var instances []Instance
	require.NoError(t, json.Unmarshal([]byte(os.Getenv("OOMWATCH_CGROUPOOM_INSTANCES")), &instances))
	r, err := NewReader(root)
	require.NoError(t, err)
	res := hostReadResult{UID: os.Getuid(), CounterFile: r.counterFile}
	errString := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	began := time.Now()
	first, err := r.Read(instances)
	res.First = killsOf(first)
	res.FirstTook, res.FirstErr = time.Since(began), errString(err)
	res.FirstSearches = r.searches
	began = time.Now()
	second, err := r.Read(instances)
	res.Second = killsOf(second)
	res.SecondTook, res.SecondErr = time.Since(began), errString(err)
	res.SecondSearches = r.searches - res.FirstSearches
	for _, k := range r.kubepods {
		res.Kubepods = append(res.Kubepods, k.dir)
	}
	b, err := json.Marshal(res)
	require.NoError(t, err)
	fmt.Printf("%s%s\n", hostReadPrefix, b)
}

// hostReadPrefix starts TestHostRead's line of results.
const hostReadPrefix = "cgroupoom host read: "

// hostReadResult is what TestHostRead prints: the user it ran as, the counter file it read,
// the kubepods cgroups it found, and the Reads' results, errors, searches and times.
type hostReadResult struct {
	UID                   int
	CounterFile           string
	Kubepods              []string
	First, Second         map[string]uint64
	FirstErr, SecondErr   string
	FirstSearches         int
	SecondSearches        int
	FirstTook, SecondTook time.Duration
}

// On cgroup v2, memory.events also counts the group kills (memory.oom.group): Read tells
// them; v1's memory.oom_control has none.
func TestGroupKills(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{"low 0\nhigh 0\nmax 21\noom 1\noom_kill 6\noom_group_kill 1\n", 1, false},
		{"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 0, false},
		{"oom_kill 6\noom_group_kill x\n", 0, true},
	} {
		got, err := parseGroupKill([]byte(tc.in))
		if tc.err {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}
