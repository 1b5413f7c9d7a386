// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package v2node runs a cgroup v2 Kubernetes node for the project's local control plane in a
// QEMU guest, on hosts that run cgroup v1 (where the kubelet refuses to start by default and the
// memory controller cannot be moved to the unified hierarchy).
//
// The guest boots Debian's kernel (make v2-node-kernel puts it in _build/v2node/kernel)
// under TCG with a busybox initramfs. Its root is an overlay of the host's root, shared read-only
// over 9p, so it runs the cluster's containerd and kubelet from _build/cluster/bin and Debian's
// runc as the host node does, with cgroup2 mounted and every controller delegated. The kubelet
// keeps its default failCgroupV1 (true) and uses the cgroupfs driver.
//
// The guest reaches the host only through QEMU's user-mode forwards: 10.0.2.100:6443 in the
// guest is the API server on the host's 127.0.0.1, and a port on the host's 127.0.0.1 is the
// kubelet's 10250. The guest's scripts report progress, the kubelet's CPU time and the group OOM
// kills of its containers' cgroups on the serial console, which the host reads (see Node.Wait).
//
// What a start does to the host is a QEMU process (in its own session, with the helpers it
// spawns for the API server forward) and the run folder; both are recorded in a state file
// first, and Teardown removes them, from another process too, and twice in a row.
package v2node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
	"github.com/oomwatch/oomwatch/internal/procstat"
)

const (
	// QEMU is the emulator; Busybox the static busybox of Debian's busybox-static.
	QEMU    = "qemu-system-x86_64"
	Busybox = "/bin/busybox"
	// MkfsExt4 formats the guest's disk (Debian's e2fsprogs).
	MkfsExt4 = "mkfs.ext4"
	// DefaultNodeName is the node the guest's kubelet registers.
	DefaultNodeName = "oomwatch-v2"
	// HostAddress is the guest's address of the host: the API server is its port 6443, and
	// Options.HostForwards adds others.
	HostAddress = guestAPIAddress
)

// Options says where the node's guest comes from and what it is given. The zero value, after
// Defaults, is the node make v2-node-smoke starts.
type Options struct {
	// Kernel is the kernel folder (vmlinuz, modules/, modules.load, version).
	// Default: <module root>/_build/v2node/kernel.
	Kernel string
	// RunDir holds the state file, the initramfs, the console log and the share the guest reads
	// its configuration from and writes its logs to; it is removed at teardown.
	// Default: /run/oomwatch-v2node.
	RunDir string
	// NodeName is the node the kubelet registers. Default: DefaultNodeName.
	NodeName string
	// MemoryMiB and CPUs size the guest. Defaults: 3072 and 2.
	MemoryMiB int
	CPUs      int
	// KubeletPort is the host's 127.0.0.1 port forwarded to the kubelet's 10250; 0 picks a free one.
	KubeletPort int
	// HostForwards maps ports of HostAddress in the guest to ports of the host's 127.0.0.1,
	// as the API server is forwarded (one guestfwd each): what the guest sends to
	// HostAddress:<key> reaches 127.0.0.1:<value> on the host, e.g. an OTLP backend.
	HostForwards map[int]int
	// GuestForwards maps ports of the host's 127.0.0.1 to ports of the guest (one hostfwd each),
	// as the kubelet's 10250 is forwarded: what the host sends to 127.0.0.1:<key> reaches the
	// guest's <value>, e.g. a hostNetwork pod's Prometheus exporter.
	GuestForwards map[int]int
	// KubeletDiskMiB sizes the guest's disk (ext4, sparse, in RunDir) that holds the kubelet's
	// folder: emptyDirs on it keep page cache the kernel can reclaim, as on a node's disk, where a
	// tmpfs's pages could only be swapped. Default: 4096.
	KubeletDiskMiB int
	// SingleProcessOOMKill sets the kubelet's singleProcessOOMKill: true, so the kubelet leaves
	// memory.oom.group at 0 and an OOM kills one process of a container, not all of them.
	SingleProcessOOMKill bool
	// SystemReservedMemory, when set, is the kubelet's systemReserved memory: the node's
	// allocatable memory for pods, the limit of the kubepods cgroup, is the rest.
	SystemReservedMemory string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Defaults fills every zero field but KubeletPort; moduleDir is the cluster's module root.
func (o Options) Defaults(moduleDir string) Options {
	if o.Kernel == "" {
		o.Kernel = filepath.Join(moduleDir, "_build", "v2node", "kernel")
	}
	if o.RunDir == "" {
		o.RunDir = "/run/oomwatch-v2node"
	}
	if o.NodeName == "" {
		o.NodeName = DefaultNodeName
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 3072
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.KubeletDiskMiB == 0 {
		o.KubeletDiskMiB = 4096
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// state is what teardown needs: the QEMU process, by pid and start time.
type state struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

// Marker is one line the guest reported, with when the host read it.
type Marker struct {
	At time.Time
	// Kind is the line's first word (root-ready, containerd-ready, images-imported,
	// kubelet-started, kubelet-cpu, oom, failed, ...); Fields are the rest.
	Kind   string
	Fields []string
}

// Node is a started guest.
type Node struct {
	opts    Options
	cluster *controlplane.Cluster
	// Booted is when QEMU was started.
	Booted time.Time

	mu      sync.Mutex
	markers []Marker
	changed chan struct{}
	exited  chan struct{}
	exitErr error
}

// Check tells why a node cannot start here, nil when it can.
func Check(opts Options, moduleDir string) error {
	o := opts.Defaults(moduleDir)
	if os.Geteuid() != 0 {
		return errors.New("the v2 node needs root (its run folder and the host's root shared with the guest)")
	}
	if _, err := exec.LookPath(QEMU); err != nil {
		return fmt.Errorf("%s is missing: install Debian's qemu-system-x86 (make cluster-deps as root)", QEMU)
	}
	if _, err := os.Stat(Busybox); err != nil {
		return fmt.Errorf("%s is missing: install Debian's busybox-static (make cluster-deps as root)", Busybox)
	}
	if _, err := exec.LookPath(MkfsExt4); err != nil {
		return fmt.Errorf("%s is missing: install Debian's e2fsprogs (make cluster-deps as root)", MkfsExt4)
	}
	for _, f := range []string{"vmlinuz", "modules.load", "version"} {
		if _, err := os.Stat(filepath.Join(o.Kernel, f)); err != nil {
			return fmt.Errorf("the kernel folder %s is incomplete (%w): run make v2-node-kernel", o.Kernel, err)
		}
	}
	return nil
}

func (n *Node) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(n.opts.Log, ">> "+format+"\n", args...)
}

func (n *Node) shareDir() string { return filepath.Join(n.opts.RunDir, "share") }

// ConsoleLog is the guest's serial console, as read so far.
func (n *Node) ConsoleLog() string { return filepath.Join(n.opts.RunDir, "console.log") }

// GuestLog is a log the guest's node script writes: containerd.log, kubelet.log, ctr.log.
func (n *Node) GuestLog(name string) string { return filepath.Join(n.shareDir(), "logs", name) }

// Options returns the options with defaults filled in.
// LeakInRootCgroup has guestwatch start a process in the guest's root cgroup, outside every pod,
// that allocates until the node runs out of memory and the kernel kills it: a system OOM kill.
func (n *Node) LeakInRootCgroup() error {
	return os.WriteFile(filepath.Join(n.shareDir(), "leak-in-root-cgroup"), nil, 0o600)
}

func (n *Node) Options() Options { return n.opts }

// Start writes the node's configuration, boots the guest and returns once QEMU runs; the guest's
// progress is then read from its console (Wait). c is the started control plane.
func Start(ctx context.Context, c *controlplane.Cluster, opts Options) (*Node, error) {
	cpo := c.Options()
	o := opts.Defaults(cpo.ModuleDir)
	if err := Check(o, cpo.ModuleDir); err != nil {
		return nil, err
	}
	n := &Node{opts: o, cluster: c, changed: make(chan struct{}), exited: make(chan struct{})}
	if st, err := readState(o.RunDir); err == nil && st.alive() {
		return nil, fmt.Errorf("a v2 node already runs (QEMU pid %d): tear it down first", st.PID)
	}
	if err := os.RemoveAll(o.RunDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(n.shareDir(), "logs"), 0o750); err != nil {
		return nil, err
	}
	if o.KubeletPort == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		n.opts.KubeletPort = p
	}
	archives, err := testworkload.BuildImages(ctx, cpo.ModuleDir, filepath.Join(cpo.Dir, "images"))
	if err != nil {
		return nil, err
	}
	var images []string
	for _, a := range archives {
		images = append(images, a.Path)
	}
	// guestwatch runs from the share in the guest.
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", //nolint:gosec // builds this module's own package
		"-o", filepath.Join(n.shareDir(), "guestwatch"), "github.com/oomwatch/oomwatch/internal/cluster/v2node/guestwatch")
	build.Dir = cpo.ModuleDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building guestwatch: %w\n%s", err, b)
	}
	if err := n.writeConfig(c, images); err != nil {
		return nil, err
	}
	if err := n.makeKubeletDisk(ctx); err != nil {
		return nil, err
	}
	load, err := os.ReadFile(filepath.Join(o.Kernel, "modules.load"))
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(o.RunDir, "initrd.gz")
	script := fmt.Sprintf(initScript, strings.Join(strings.Fields(string(load)), " "), o.NodeName, cpo.ModuleDir)
	if err := writeInitramfs(initrd, o.Kernel, Busybox, script, strings.Fields(string(load))); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := n.boot(initrd, cpo.APIServerPort); err != nil {
		return nil, err
	}
	return n, nil
}

// kubeletDisk is the guest's disk, in the run folder.
func (n *Node) kubeletDisk() string { return filepath.Join(n.opts.RunDir, "kubelet.img") }

// makeKubeletDisk writes the guest's disk: a sparse file with an ext4 file system.
func (n *Node) makeKubeletDisk(ctx context.Context) error {
	f, err := os.Create(n.kubeletDisk())
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(n.opts.KubeletDiskMiB) << 20); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	mkfs := exec.CommandContext(ctx, MkfsExt4, "-q", "-F", "-L", "kubelet", n.kubeletDisk()) //nolint:gosec // G204: the run folder's own file
	if b, err := mkfs.CombinedOutput(); err != nil {
		return fmt.Errorf("formatting the kubelet's disk: %w\n%s", err, b)
	}
	return nil
}

// boot starts QEMU in its own session (teardown signals the whole group: QEMU and the helpers
// it spawns for each forwarded API server connection) and reads its console.
func (n *Node) boot(initrd string, apiPort int) error {
	o := n.opts
	netdev := fmt.Sprintf("user,id=n0,restrict=off,hostfwd=tcp:127.0.0.1:%d-:10250,guestfwd=tcp:%s:%d-cmd:%s nc 127.0.0.1 %d",
		o.KubeletPort, guestAPIAddress, guestAPIPort, Busybox, apiPort)
	hostPorts := make([]int, 0, len(o.GuestForwards))
	for p := range o.GuestForwards {
		hostPorts = append(hostPorts, p)
	}
	sort.Ints(hostPorts)
	for _, p := range hostPorts {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", p, o.GuestForwards[p])
	}
	guestPorts := make([]int, 0, len(o.HostForwards))
	for p := range o.HostForwards {
		guestPorts = append(guestPorts, p)
	}
	sort.Ints(guestPorts)
	for _, p := range guestPorts {
		if p == guestAPIPort {
			return fmt.Errorf("guest port %d of %s is the API server's", p, HostAddress)
		}
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s nc 127.0.0.1 %d", guestAPIAddress, p, Busybox, o.HostForwards[p])
	}
	args := []string{
		"-accel", "tcg,thread=multi", "-cpu", "max", "-smp", strconv.Itoa(o.CPUs), "-m", strconv.Itoa(o.MemoryMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-no-reboot",
		"-kernel", filepath.Join(o.Kernel, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + n.shareDir() + ",mount_tag=" + shareTag + ",security_model=none",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
		"-drive", "if=none,id=kubelet,format=raw,file=" + n.kubeletDisk(), "-device", "virtio-blk-pci,drive=kubelet",
	}
	console, err := os.Create(n.ConsoleLog())
	if err != nil {
		return err
	}
	cmd := exec.Command(QEMU, args...) //nolint:gosec // G204: the arguments are built here
	out, err := cmd.StdoutPipe()
	if err != nil {
		_ = console.Close()
		return err
	}
	stderr, err := os.Create(filepath.Join(o.RunDir, "qemu.stderr"))
	if err != nil {
		_ = console.Close()
		return err
	}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	n.logf("booting the v2 node's guest (%d MiB, %d CPUs, TCG); kubelet's 10250 on 127.0.0.1:%d", o.MemoryMiB, o.CPUs, o.KubeletPort)
	n.Booted = time.Now()
	if err := cmd.Start(); err != nil {
		_ = console.Close()
		_ = stderr.Close()
		return fmt.Errorf("starting %s: %w", QEMU, err)
	}
	st, err := procstat.StartTime(cmd.Process.Pid)
	if err == nil {
		err = writeState(o.RunDir, state{PID: cmd.Process.Pid, StartTime: st})
	}
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		_ = console.Close()
		_ = stderr.Close()
		return err
	}
	go func() {
		defer func() { _ = console.Close(); _ = stderr.Close() }()
		n.readConsole(out, console)
		err := cmd.Wait()
		n.mu.Lock()
		n.exitErr = err
		close(n.exited)
		n.mu.Unlock()
	}()
	return nil
}

// readConsole copies the console to its log and records the marker lines.
func (n *Node) readConsole(r io.Reader, log io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		_, _ = fmt.Fprintln(log, line)
		i := strings.Index(line, markerPrefix)
		if i < 0 || !strings.HasSuffix(line, markerSuffix) {
			continue
		}
		f := strings.Fields(strings.TrimSuffix(line[i+len(markerPrefix):], markerSuffix))
		if len(f) == 0 {
			continue
		}
		n.mu.Lock()
		n.markers = append(n.markers, Marker{At: time.Now(), Kind: f[0], Fields: f[1:]})
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

// Markers returns the markers read so far of kind ("" for all).
func (n *Node) Markers(kind string) []Marker {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Marker
	for _, m := range n.markers {
		if kind == "" || m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// Wait returns the first marker of kind for which ok holds (nil: any), reported since the boot.
// It fails when the guest reports a failure, when QEMU exits, or with ctx.
func (n *Node) Wait(ctx context.Context, kind string, ok func(Marker) bool) (Marker, error) {
	for seen := 0; ; {
		n.mu.Lock()
		ms, changed, exited := n.markers, n.changed, n.exited
		n.mu.Unlock()
		for ; seen < len(ms); seen++ {
			m := ms[seen]
			if m.Kind == kind && (ok == nil || ok(m)) {
				return m, nil
			}
			if m.Kind == "failed" || m.Kind == "node-script-exited" {
				return m, fmt.Errorf("the guest reported %q while waiting for %s; see %s and %s", m.Kind+" "+strings.Join(m.Fields, " "), kind, n.ConsoleLog(), n.GuestLog(""))
			}
		}
		select {
		case <-ctx.Done():
			return Marker{}, fmt.Errorf("waiting for the guest's %s: %w (see %s)", kind, ctx.Err(), n.ConsoleLog())
		case <-exited:
			n.mu.Lock()
			err := n.exitErr
			n.mu.Unlock()
			return Marker{}, fmt.Errorf("QEMU exited (%v) while waiting for the guest's %s; see %s", err, kind, n.ConsoleLog())
		case <-changed:
		}
	}
}

// Stop tears the node down; see Teardown.
func (n *Node) Stop() error { return Teardown(n.opts, n.cluster.Options().ModuleDir) }

// Teardown stops the node's QEMU (and every process of its session) and removes its run folder.
// Nothing of the guest is on the host but those: its root, the runtime's folder and its cgroups
// live in the guest's memory, the kubelet's folder on a disk in the run folder. Running it again
// finds nothing to do.
func Teardown(opts Options, moduleDir string) error {
	o := opts.Defaults(moduleDir)
	st, err := readState(o.RunDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case st.alive():
		_, _ = fmt.Fprintf(o.Log, ">> stopping the v2 node's QEMU (pid %d)\n", st.PID)
		if err := killSession(st); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(o.RunDir); err != nil {
		return err
	}
	return nil
}

// killSession kills QEMU's process group (the session it leads) and waits for QEMU to go.
func killSession(st state) error {
	_ = syscall.Kill(-st.PID, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !st.alive() && len(sessionPIDs(st.PID)) == 0 {
			return nil
		}
		for _, pid := range sessionPIDs(st.PID) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("QEMU (pid %d) or its helpers did not exit after SIGKILL", st.PID)
}

// sessionPIDs are the live processes of session sid (QEMU's and its helpers').
func sessionPIDs(sid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procstat.Fields(pid)
		// Fields after the command: state (0), ppid, pgrp, session (3).
		if err != nil || len(f) < 4 || f[0] == "Z" || f[3] != strconv.Itoa(sid) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("state file in %s: %w", dir, err)
	}
	return st, nil
}

func writeState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// alive tells whether the recorded QEMU still runs (a recycled pid has another start time).
func (st state) alive() bool { return procstat.Running(st.PID, st.StartTime) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
