// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package procstat reads what the local cluster and its tests need of a process from /proc:
// its state, start time, CPU time and resident set.
package procstat

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of the times in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTicks = 100

// Fields are the fields of /proc/<pid>/stat after the command name (which is in parentheses and
// may hold spaces): the state first, then the parent's pid, and so on (proc(5), from field 3).
func Fields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, errors.New("malformed /proc stat")
	}
	return strings.Fields(s[i+1:]), nil
}

// field is Fields(pid)[i] as a number.
func field(pid, i int) (uint64, error) {
	f, err := Fields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) <= i {
		return 0, errors.New("short /proc stat")
	}
	return strconv.ParseUint(f[i], 10, 64)
}

// StartTime is when pid started, in clock ticks since boot; with the pid it names one process,
// so a recycled pid is never taken for it.
func StartTime(pid int) (uint64, error) { return field(pid, 19) }

// Running tells whether the process that started at start (StartTime) as pid still runs: a
// recycled pid has another start time. A process whose main thread is a zombie runs until its
// other threads are gone too: until then they still hold its files and ports, as a
// multi-threaded server does for a moment after SIGKILL.
func Running(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	f, err := Fields(pid)
	if err != nil || len(f) < 20 {
		return false
	}
	if t, err := strconv.ParseUint(f[19], 10, 64); err != nil || t != start {
		return false
	}
	if f[0] != "Z" {
		return true
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err == nil && len(tasks) > 1
}

// CPUTime is the CPU time pid has used, user and system.
func CPUTime(pid int) (time.Duration, error) {
	f, err := Fields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	var ticks uint64
	for _, s := range f[11:13] { // utime, stime
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// RSS is pid's resident set size in bytes (VmRSS of /proc/<pid>/status).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS (a kernel thread or a zombie)", pid)
}
