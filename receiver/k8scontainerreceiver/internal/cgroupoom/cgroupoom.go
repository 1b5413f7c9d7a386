// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package cgroupoom reads the kernel's own count of OOM kills of each container: oom_kill in
// the container's memory cgroup, through a (read-only) mount of the host's cgroup filesystem.
//
// The kernel counts every OOM kill in the memory cgroup of the process it kills
// (mm/oom_kill.c, __oom_kill_process), whether the container's limit, its pod's or the node's
// memory ran out. The kubelet's
// container_oom_events_total, by contrast, counts the OOM reports of the kernel log, which the
// kernel rate-limits to 10 in 5 s for the whole host: under fast kills it falls behind for
// good, while oom_kill does not.
//
// Where the count is:
//   - cgroup v1: the "oom_kill N" line of memory.oom_control in the container's cgroup of the
//     memory hierarchy (<root>/memory/...). v1 counts a kill in the victim's cgroup only.
//   - cgroup v2: the "oom_kill N" line of memory.events in the container's cgroup. That file
//     also counts kills in the cgroup's descendants (memory.events.local would not); a
//     container normally has none, and when a runtime or the workload does nest cgroups inside
//     the container's, their kills are the container's too, so memory.events is the count that
//     is right in both cases. (Mounted with memory_localevents, memory.events counts the cgroup
//     alone, which is the same when there are no descendants.)
//
// Where the container's cgroup is: the kubelet puts pods under a "kubepods" cgroup, in the
// folder of the pod's QoS class unless the pod is Guaranteed, and the runtime puts each
// container in a cgroup of its own inside the pod's:
//   - cgroupfs driver: <base>/.../kubepods/[burstable|besteffort/]pod<UID>/<container ID>
//     (CRI-O: crio-<container ID>);
//   - systemd driver: <base>/.../kubepods.slice/kubepods-pod<uid>.slice/<runtime>-<container
//     ID>.scope for a Guaranteed pod, kubepods.slice/kubepods-burstable.slice/
//     kubepods-burstable-pod<uid>.slice/... for a Burstable one (besteffort alike), <uid> being
//     the pod's UID with _ for -, and <runtime> cri-containerd, crio or docker. kind's nodes
//     call the slices kubelet-kubepods.slice, kubelet-kubepods-burstable.slice and so on.
//
// <base> is the memory hierarchy (<root>/memory on v1, <root> on v2) and the kubepods cgroup
// is at most maxKubepodsDepth levels below it. A Reader looks for the kubepods cgroups once,
// finds a pod's cgroup with a few stat calls, lists the pod's cgroup to find its containers',
// and remembers both, so that a steady scrape opens one file per container and lists nothing.
package cgroupoom

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Instance names a running container instance.
type Instance struct {
	// PodUID is the UID of the instance's pod (metadata.uid), with its dashes.
	PodUID string
	// Container is the container's name in the pod; Read does not need it.
	Container string
	// ContainerID is the runtime's ID of the instance without the scheme: "abc...", not
	// "containerd://abc...".
	ContainerID string
}

const (
	// maxKubepodsDepth is how deep below the memory hierarchy's root a kubepods cgroup may be:
	// <base>/kubepods (the kubelet's default), <base>/<cgroup root>/kubepods,
	// <base>/kubelet.slice/kubelet-kubepods.slice (kind), one level more for a node that
	// runs in a container of another host's.
	maxKubepodsDepth = 3
	// rewalkEvery is how long after a search for kubepods cgroups a pod that is nowhere to
	// be found sends the Reader looking again. The kubelet creates its kubepods cgroup once,
	// when it starts; until it has, no pod can be found, and the counts (cumulative in the
	// kernel) show once it has.
	rewalkEvery = time.Minute
	// maxCounterFile bounds memory.oom_control and memory.events (under 200 bytes).
	maxCounterFile = 4096
)

// Hierarchies and counter files.
const (
	v1CounterFile = "memory.oom_control"
	v2CounterFile = "memory.events"
	// v2PressureFile is the cgroup's pressure stall information for memory (cgroup v2, a kernel
	// with PSI on).
	v2PressureFile = "memory.pressure"
)

// Reader finds container cgroups under the root given to NewReader and reads their oom_kill
// counters; safe for use by one goroutine.
type Reader struct {
	// base is the memory hierarchy: root/memory (v1) or root (v2).
	base string
	// counterFile is memory.oom_control (v1) or memory.events (v2).
	counterFile string

	// kubepods are the kubepods cgroups found under base; walkedAt is when they were looked
	// for, walkedGen in which Read.
	kubepods  []kubepodsCgroup
	walkedAt  time.Time
	walkedGen uint64

	pods       map[string]*podCgroup       // by pod UID
	containers map[string]*containerCgroup // by container ID

	// gen numbers the Reads; a cache entry holds the last Read that asked for it.
	gen uint64
	buf []byte

	// skipPressure leaves memory.pressure unread (SkipPressure).
	skipPressure bool

	// now is time.Now and listDir listDir, but in tests.
	now     func() time.Time
	listDir func(string) ([]fs.DirEntry, error)
	// searches counts the directories listed and the paths stat'ed looking for cgroups: a
	// Read that finds everything in its caches adds none.
	searches int
}

// kubepodsCgroup is a kubepods cgroup: the folder of Guaranteed pods and of the QoS classes'.
type kubepodsCgroup struct {
	dir string
	// slice is the systemd slice name without ".slice" ("kubepods", "kubelet-kubepods"); ""
	// for the cgroupfs driver's "kubepods".
	slice string
}

// podParent is a folder of pod cgroups: a kubepods cgroup or one of its QoS classes'.
type podParent struct {
	dir, slice string
}

// parents are the folders where a pod's cgroup may be, whether or not they exist.
func (k kubepodsCgroup) parents() [3]podParent {
	if k.slice == "" {
		return [3]podParent{
			{dir: k.dir},
			{dir: k.dir + "/burstable"},
			{dir: k.dir + "/besteffort"},
		}
	}
	return [3]podParent{
		{dir: k.dir, slice: k.slice},
		{dir: k.dir + "/" + k.slice + "-burstable.slice", slice: k.slice + "-burstable"},
		{dir: k.dir + "/" + k.slice + "-besteffort.slice", slice: k.slice + "-besteffort"},
	}
}

// podDir is where the cgroup of the pod with this UID would be in p.
func (p podParent) podDir(uid string) string {
	if p.slice == "" {
		return p.dir + "/pod" + uid
	}
	return p.dir + "/" + p.slice + "-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
}

type podCgroup struct {
	dir string
	gen uint64
	// names lists dir's subfolders as read in Read listedGen, for the other containers of the
	// pod that Read looks for.
	names     []string
	listedGen uint64
}

type containerCgroup struct {
	// counter is the path of the counter file.
	counter string
	// failcnt is the path of memory.failcnt (cgroup v1); "" on v2.
	failcnt string
	// pressure is the path of memory.pressure (cgroup v2); "" on v1.
	pressure string
	gen      uint64
}

// NewReader returns a Reader of the cgroup filesystem mounted at root: cgroup v1 when
// root/memory is the memory hierarchy (or root itself is), cgroup v2 when root has
// cgroup.controllers with the memory controller in it. It errs when root is neither, which is
// also what a mount of /sys/fs/cgroup without its sub-mounts looks like on a v1 host.
func NewReader(root string) (*Reader, error) {
	r := &Reader{
		pods:       map[string]*podCgroup{},
		containers: map[string]*containerCgroup{},
		buf:        make([]byte, maxCounterFile+1),
		now:        time.Now,
		listDir:    listDir,
	}
	root = filepath.Clean(root)
	controllers, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")) //nolint:gosec // G703: root is configured
	switch {
	case err == nil:
		if !containsField(controllers, "memory") {
			return nil, fmt.Errorf("cgroup v2 at %s: the memory controller is not enabled (cgroup.controllers: %q)", root, bytes.TrimSpace(controllers))
		}
		r.base, r.counterFile = root, v2CounterFile
		return r, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	for _, base := range []string{filepath.Join(root, "memory"), root} {
		_, err := os.Stat(filepath.Join(base, v1CounterFile)) //nolint:gosec // G703: root is configured
		if err == nil {
			r.base, r.counterFile = base, v1CounterFile
			return r, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if st, err := os.Stat(filepath.Join(root, "memory")); err == nil && st.IsDir() { //nolint:gosec // G703: root is configured
		return nil, fmt.Errorf("%s/memory has no %s: it is not the cgroup v1 memory hierarchy (a mount of the host's /sys/fs/cgroup must include its sub-mounts)", root, v1CounterFile)
	}
	return nil, fmt.Errorf("%s is neither cgroup v1 (no memory/%s) nor cgroup v2 (no cgroup.controllers)", root, v1CounterFile)
}

// containsField tells whether the whitespace-separated list b has the word w.
func containsField(b []byte, w string) bool {
	for _, f := range bytes.Fields(b) {
		if string(f) == w {
			return true
		}
	}
	return false
}

// Counts are the kernel's counts of one container's OOM kills.
type Counts struct {
	// Kills is oom_kill: how many times the OOM killer killed a process of the cgroup.
	Kills uint64
	// GroupKills is oom_group_kill (cgroup v2; 0 on v1): how many times it killed all the
	// cgroup's processes at once (memory.oom.group 1, which the kubelet sets on each container
	// unless it runs with singleProcessOOMKill). A group kill adds one or more to Kills for
	// each process (measured on 6.1: 5 to 8 for 4 processes), and ends the container.
	GroupKills uint64
	// LimitHits is how many times the container's memory usage reached its limit: "max" of
	// memory.events (cgroup v2), memory.failcnt (v1). Most hits end in reclaim, not in a kill:
	// they are the warning before one. HasLimitHits tells that the kernel gave it.
	LimitHits    uint64
	HasLimitHits bool
	// StallSome and StallFull are the totals of memory.pressure (cgroup v2), in microseconds:
	// the time at least one task of the cgroup (some), and all its non-idle tasks at once (full),
	// waited for memory: reclaim at the limit, pages read back. HasStall tells that the kernel
	// gave them (PSI on).
	StallSome, StallFull uint64
	HasStall             bool
}

// SkipPressure has Read leave each container's memory.pressure unread, for a reader whose
// stall times nobody reports: a file less to read per container and scrape.
func (r *Reader) SkipPressure() { r.skipPressure = true }

// Read returns, for each instance whose cgroup it finds, the kernel's counts; instances
// whose cgroup is not (or no longer) there are left out, not errors.
//
// An instance whose counter file cannot be read or parsed (other than by being gone) is left
// out too, and its error is part of the returned error, which joins one per such instance: the
// map holds the other instances' counts even when the error is not nil.
//
// Read remembers the cgroups of the instances it is asked for and forgets those of the
// instances it was asked for before but not this time.
func (r *Reader) Read(instances []Instance) (map[string]Counts, error) {
	r.gen++
	out := make(map[string]Counts, len(instances))
	var errs []error
	for _, in := range instances {
		if p := r.pods[in.PodUID]; p != nil {
			p.gen = r.gen
		}
		n, ok, err := r.read(in)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s of pod %s: %w", in.ContainerID, in.PodUID, err))
			continue
		}
		if ok {
			out[in.ContainerID] = n
		}
	}
	for uid, p := range r.pods {
		if p.gen != r.gen {
			delete(r.pods, uid)
		}
	}
	for id, c := range r.containers {
		if c.gen != r.gen {
			delete(r.containers, id)
		}
	}
	return out, errors.Join(errs...)
}

// read reads one instance's counts; ok is false when its cgroup is not there.
func (r *Reader) read(in Instance) (n Counts, ok bool, err error) {
	if !validName(in.PodUID) || !validName(in.ContainerID) {
		return Counts{}, false, nil
	}
	c := r.containers[in.ContainerID]
	if c == nil {
		dir, err := r.findContainer(in)
		if err != nil || dir == "" {
			return Counts{}, false, err
		}
		c = &containerCgroup{counter: dir + "/" + r.counterFile}
		if r.counterFile == v1CounterFile {
			c.failcnt = dir + "/" + v1FailcntFile
		} else if !r.skipPressure {
			c.pressure = dir + "/" + v2PressureFile
		}
		r.containers[in.ContainerID] = c
	}
	c.gen = r.gen
	b, err := r.readCounterFile(c.counter)
	if gone(err) {
		// The container ended and its cgroup went with it; an ID is never reused.
		delete(r.containers, in.ContainerID)
		return Counts{}, false, nil
	}
	if err != nil {
		return Counts{}, false, err
	}
	if n.Kills, err = parseOOMKill(b); err == nil {
		n.GroupKills, err = parseGroupKill(b)
	}
	if err == nil && c.failcnt == "" && bytes.Contains(b, []byte("max ")) {
		n.LimitHits, err = parseField(b, "max")
		n.HasLimitHits = err == nil
	}
	if err != nil {
		return Counts{}, false, fmt.Errorf("%s: %w", c.counter, err)
	}
	if c.failcnt != "" {
		// The kill count is read: a failcnt that cannot be read leaves only the hits unknown.
		if b, err := r.readCounterFile(c.failcnt); err == nil {
			n.LimitHits, err = parseDecimal(bytes.TrimSuffix(b, []byte("\n")))
			n.HasLimitHits = err == nil
		}
	}
	if c.pressure != "" {
		// Nor does the stall time: a kernel with PSI off has no such file.
		if b, err := r.readCounterFile(c.pressure); err == nil {
			n.StallSome, n.StallFull, err = parsePressure(b)
			n.HasStall = err == nil
		}
	}
	return n, true, nil
}

// parsePressure returns the totals of a pressure file's some and full lines
// ("some avg10=0.00 avg60=0.00 avg300=0.00 total=1234").
func parsePressure(b []byte) (some, full uint64, err error) {
	var found [2]bool
	for line := range bytes.Lines(b) {
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var i int
		switch string(fields[0]) {
		case "some":
			i = 0
		case "full":
			i = 1
		default:
			continue
		}
		if found[i] {
			return 0, 0, fmt.Errorf("two %s lines", fields[0])
		}
		total, ok := []byte(nil), false
		for _, f := range fields[1:] {
			if v, cut := bytes.CutPrefix(f, []byte("total=")); cut {
				total, ok = v, true
			}
		}
		if !ok {
			return 0, 0, fmt.Errorf("%s: no total", fields[0])
		}
		v, err := parseDecimal(total)
		if err != nil {
			return 0, 0, fmt.Errorf("%s total %q: %w", fields[0], total, err)
		}
		found[i] = true
		if i == 0 {
			some = v
		} else {
			full = v
		}
	}
	if !found[0] || !found[1] {
		return 0, 0, errors.New("no some or no full line")
	}
	return some, full, nil
}

// validName rejects what cannot be a pod UID or container ID, and could lead a path out of
// the pod's cgroup.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// findContainer returns the cgroup folder of an instance, "" when it is not there.
func (r *Reader) findContainer(in Instance) (string, error) {
	p, err := r.findPod(in.PodUID)
	if err != nil || p == nil {
		return "", err
	}
	if p.listedGen != r.gen {
		names, err := r.subdirs(p.dir)
		if gone(err) {
			delete(r.pods, in.PodUID)
			return "", nil
		}
		if err != nil {
			return "", err
		}
		p.names, p.listedGen = names, r.gen
	}
	for _, name := range p.names {
		if isContainerCgroup(name, in.ContainerID) {
			return p.dir + "/" + name, nil
		}
	}
	return "", nil
}

// isContainerCgroup tells whether a folder in a pod's cgroup is the cgroup of the container
// with this ID.
func isContainerCgroup(name, id string) bool {
	return name == id || ContainerIDOf(name) == id
}

// ContainerIDOf returns the ID of the container whose cgroup a folder in a pod's cgroup is:
// "<id>" (containerd and Docker with cgroupfs), "crio-<id>" (CRI-O with cgroupfs), or
// "<runtime>-<id>.scope" (systemd); "" for another scope, such as CRI-O's
// "crio-conmon-<id>.scope", the container's monitor.
func ContainerIDOf(name string) string {
	scope, isScope := strings.CutSuffix(name, ".scope")
	for _, prefix := range [...]string{"cri-containerd-", "crio-", "docker-"} {
		if id, ok := strings.CutPrefix(scope, prefix); ok && (isScope || prefix == "crio-") {
			if strings.HasPrefix(id, "conmon-") {
				return ""
			}
			return id
		}
	}
	if isScope {
		return ""
	}
	return name
}

// findPod returns the cached or found cgroup of a pod, nil when it is not there.
func (r *Reader) findPod(uid string) (*podCgroup, error) {
	if p := r.pods[uid]; p != nil {
		return p, nil
	}
	dir, err := r.searchPod(uid)
	if err != nil || dir == "" {
		now := r.now()
		if err != nil || r.walkedGen == r.gen || (!r.walkedAt.IsZero() && now.Sub(r.walkedAt) < rewalkEvery) {
			return nil, err
		}
		if err := r.walk(now); err != nil {
			return nil, err
		}
		if dir, err = r.searchPod(uid); err != nil || dir == "" {
			return nil, err
		}
	}
	p := &podCgroup{dir: dir, gen: r.gen}
	r.pods[uid] = p
	return p, nil
}

// searchPod looks for a pod's cgroup in the kubepods cgroups known.
func (r *Reader) searchPod(uid string) (string, error) {
	for _, k := range r.kubepods {
		for _, parent := range k.parents() {
			dir := parent.podDir(uid)
			r.searches++
			st, err := os.Stat(dir)
			if gone(err) {
				continue
			}
			if err != nil {
				return "", err
			}
			if st.IsDir() {
				return dir, nil
			}
		}
	}
	return "", nil
}

// walk looks for kubepods cgroups at most maxKubepodsDepth levels below base. A folder that
// cannot be listed is passed over, but when no kubepods cgroup is found the first such error
// is walk's: a reader without the permission to look (a folder of mode 0750 on the way, say)
// then says so instead of finding nothing.
func (r *Reader) walk(now time.Time) error {
	r.walkedAt, r.walkedGen = now, r.gen
	var found []kubepodsCgroup
	var passedOver error
	var visit func(dir string, depth int) error
	visit = func(dir string, depth int) error {
		names, err := r.subdirs(dir)
		if err != nil {
			return err
		}
		for _, name := range names {
			sub := dir + "/" + name
			switch {
			case name == "kubepods":
				found = append(found, kubepodsCgroup{dir: sub})
			case name == "kubepods.slice" || strings.HasSuffix(name, "-kubepods.slice"):
				found = append(found, kubepodsCgroup{dir: sub, slice: strings.TrimSuffix(name, ".slice")})
			case depth < maxKubepodsDepth:
				if err := visit(sub, depth+1); err != nil && !gone(err) && passedOver == nil {
					passedOver = err
				}
			}
		}
		return nil
	}
	err := visit(r.base, 1)
	r.kubepods = found
	switch {
	case err != nil:
		return fmt.Errorf("looking for the kubepods cgroup: %w", err)
	case len(found) == 0 && passedOver != nil:
		return fmt.Errorf("no kubepods cgroup found under %s: %w", r.base, passedOver)
	}
	return nil
}

// subdirs lists the folders in dir.
func (r *Reader) subdirs(dir string) ([]string, error) {
	r.searches++
	entries, err := r.listDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// listDir lists a folder in the order the file system does.
func listDir(dir string) ([]fs.DirEntry, error) {
	f, err := os.Open(dir) //nolint:gosec // G703: a folder below the configured root
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return f.ReadDir(-1)
}

// readCounterFile reads a counter file into r.buf, with the system calls alone (open, one read,
// close): os.Open would also register the file with the poller and fstat it, which triples a
// steady Read's system calls. One read is the whole file: the kernel makes memory.oom_control
// and memory.events in one go and returns all of it to a read with room for it.
func (r *Reader) readCounterFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	for errors.Is(err, syscall.EINTR) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	n, err := syscall.Read(fd, r.buf)
	for errors.Is(err, syscall.EINTR) {
		n, err = syscall.Read(fd, r.buf)
	}
	_ = syscall.Close(fd)
	switch {
	case err != nil:
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	case n == len(r.buf):
		return nil, fmt.Errorf("%s: longer than %d bytes", path, maxCounterFile)
	}
	return r.buf[:n], nil
}

// gone tells whether err says a cgroup is not there: ENOENT, or ENODEV from a cgroup the
// kernel is removing.
func gone(err error) bool {
	return err != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV))
}

// errNoOOMKill is the error of a counter file without an oom_kill line.
var errNoOOMKill = errors.New("no oom_kill line")

// parseOOMKill returns N of the one "oom_kill N" line of a memory.oom_control (v1) or
// memory.events (v2) file: N is decimal digits alone, up to 2^64-1. Other lines
// ("oom_kill_disable 0", "oom 3") are ignored; a second oom_kill line is an error.
func parseOOMKill(b []byte) (uint64, error) {
	var n uint64
	found := false
	for line := range bytes.Lines(b) {
		v, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\n")), []byte("oom_kill "))
		if !ok {
			continue
		}
		if found {
			return 0, errors.New("two oom_kill lines")
		}
		found = true
		var err error
		if n, err = parseDecimal(v); err != nil {
			return 0, fmt.Errorf("oom_kill %q: %w", v, err)
		}
	}
	if !found {
		return 0, errNoOOMKill
	}
	return n, nil
}

// parseGroupKill returns N of the "oom_group_kill N" line of a memory.events file (cgroup v2),
// 0 if there is none (v1's memory.oom_control, or a kernel before 5.17).
func parseGroupKill(b []byte) (uint64, error) {
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\n")), []byte("oom_group_kill ")); ok {
			n, err := parseDecimal(v)
			if err != nil {
				return 0, fmt.Errorf("oom_group_kill %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, nil
}

var (
	errNotDecimal = errors.New("not a decimal number")
	errOverflow   = errors.New("over 2^64-1")
)

// parseDecimal parses a non-empty string of decimal digits.
func parseDecimal(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, errNotDecimal
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errNotDecimal
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, errOverflow
		}
		n = n*10 + d
	}
	return n, nil
}
