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
package main

import (
	"fmt"
	"io/fs"
	"os"
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

func main() {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestwatch: inotify:", err)
		os.Exit(1)
	}
	w := &watcher{fd: fd, paths: map[int32]string{}, watched: map[string]bool{}, printed: map[string]string{}, events: make(chan string, 64)}
	go w.read()
	tick := time.NewTicker(scanInterval)
	defer tick.Stop()
	for {
		select {
		case p := <-w.events:
			w.report(p)
		case <-tick.C:
			w.scan()
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
