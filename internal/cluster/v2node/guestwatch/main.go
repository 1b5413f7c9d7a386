// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command guestwatch runs in the cgroup v2 node's guest and prints, as a marker line on the
// console, the memory.events of every cgroup under /sys/fs/cgroup/kubepods that counts an OOM
// kill, as soon as the kernel changes it.
//
// A container's own cgroup is removed within moments of its OOM kill, when the runtime deletes
// the dead container: a periodic read of the tree sees the kill only in the pod's and the QoS
// class's totals. So each new cgroup's memory.events is watched with inotify (the kernel
// notifies every change of it) and read at once on each change, while the cgroup still exists.
//
// When the file leak-in-root-cgroup appears beside it (the host writes it into the share), it
// removes it and starts itself again as "guestwatch leak": a process of the guest's root cgroup,
// outside every pod, that allocates until the node runs out of memory and the kernel kills it,
// the system OOM kill the kubelet records as a SystemOOM event on its Node.
package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	root         = "/sys/fs/cgroup/kubepods"
	scanInterval = 250 * time.Millisecond
)

// leakTrigger is the file, beside the executable, that starts a leak in the root cgroup.
const leakTrigger = "leak-in-root-cgroup"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "leak" {
		leak()
	}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestwatch: inotify:", err)
		os.Exit(1)
	}
	w := &watcher{fd: fd, paths: map[int32]string{}, watched: map[string]bool{}, printed: map[string]string{}, events: make(chan string, 64)}
	go w.read()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestwatch: its own path:", err)
		os.Exit(1)
	}
	tick := time.NewTicker(scanInterval)
	defer tick.Stop()
	for {
		select {
		case p := <-w.events:
			w.report(p)
		case <-tick.C:
			w.scan()
			startLeakIfAsked(self)
		}
	}
}

type watcher struct {
	fd      int
	paths   map[int32]string // watch descriptor to memory.events path; only the main goroutine's
	watched map[string]bool
	printed map[string]string // path to the content last printed
	events  chan string
}

// scan adds a watch on the memory.events of every cgroup not yet watched and reads it once
// (a kill may have come before the watch); cgroups that are gone are forgotten.
func (w *watcher) scan() {
	seen := map[string]bool{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		ev := filepath.Join(p, "memory.events")
		seen[ev] = true
		if w.watched[ev] {
			return nil
		}
		wd, err := syscall.InotifyAddWatch(w.fd, ev, syscall.IN_MODIFY)
		if err != nil {
			return nil
		}
		w.watched[ev] = true
		w.paths[int32(wd)] = ev
		w.report(ev)
		return nil
	})
	for ev := range w.watched {
		if !seen[ev] {
			delete(w.watched, ev)
			delete(w.printed, ev)
		}
	}
}

// read turns inotify events into paths to report. The descriptor map belongs to the main
// goroutine, so the descriptor is resolved there.
func (w *watcher) read() {
	buf := make([]byte, 64*1024)
	for {
		n, err := syscall.Read(w.fd, buf)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, "guestwatch: read:", err)
			os.Exit(1)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			e := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off])) //nolint:gosec // G103: the kernel's inotify_event layout
			w.events <- fmt.Sprintf("wd:%d", e.Wd)
			off += syscall.SizeofInotifyEvent + int(e.Len)
		}
	}
}

// report prints path's memory.events when it counts an OOM kill and has changed since printed;
// path may be "wd:<descriptor>" from read.
func (w *watcher) report(path string) {
	if wd, ok := strings.CutPrefix(path, "wd:"); ok {
		var n int32
		if _, err := fmt.Sscan(wd, &n); err != nil {
			return
		}
		if path, ok = w.paths[n]; !ok {
			return
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	f := strings.Fields(string(b))
	killed := false
	for i := 0; i+1 < len(f); i += 2 {
		if (f[i] == "oom_kill" || f[i] == "oom_group_kill") && f[i+1] != "0" {
			killed = true
		}
	}
	content := strings.Join(f, " ")
	if !killed || w.printed[path] == content {
		return
	}
	w.printed[path] = content
	fmt.Printf("@@v2node oom %s %s@@\n", path, content)
}

// startLeakIfAsked starts "guestwatch leak" (self is this program) once per appearance of the
// trigger file.
func startLeakIfAsked(self string) {
	trigger := filepath.Join(filepath.Dir(self), leakTrigger)
	if os.Remove(trigger) != nil {
		return
	}
	cmd := exec.Command(self, "leak")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "guestwatch: starting the leak:", err)
		return
	}
	fmt.Fprintln(os.Stderr, "guestwatch: leaking in the root cgroup, pid", cmd.Process.Pid)
	go func() { fmt.Fprintln(os.Stderr, "guestwatch: the leak ended:", cmd.Wait()) }()
}

// held keeps the leak's allocations reachable.
var held [][]byte

// leak makes this process the OOM killer's first choice (as a BestEffort pod's processes are),
// then allocates and touches 16 MiB at a time until it is killed.
func leak() {
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0); err != nil {
		fmt.Fprintln(os.Stderr, "guestwatch leak: oom_score_adj:", err)
	}
	for {
		b := make([]byte, 16<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
	}
}
