// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The processes the cluster starts: spawn, the wait until one is ready, and the stops.

package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/oomwatch/oomwatch/internal/procstat"
)

// proc names one process the cluster started: its pid and start time (so a recycled pid is
// never signalled by mistake).
type proc struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

func (p proc) alive() bool { return procstat.Running(p.PID, p.StartTime) }

// running tells whether the process the cluster started as name still runs.
func (c *Cluster) running(name string) bool { return c.state.Procs[name].alive() }

// spawn starts a long-running component in its own session, so it outlives the command that
// started the cluster, with its output in logDir/<name>.log, and moves it into the system cgroup.
func (c *Cluster) spawn(name, bin string, args []string, env []string) (proc, error) {
	logPath := c.logPath(name)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
		return proc{}, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return proc{}, err
	}
	defer func() { _ = logFile.Close() }()
	_, _ = fmt.Fprintf(logFile, "==== %s starting %s\n", time.Now().Format(time.RFC3339), name)

	cmd := exec.Command(bin, args...) //nolint:gosec // the cluster's own binaries, with arguments built here
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return proc{}, fmt.Errorf("starting %s: %w", name, err)
	}
	// The process is reaped in the background so that a stop seen from here is a real exit, not
	// a zombie; when the starter exits first, init reaps it.
	go func() { _ = cmd.Wait() }()
	st, err := procstat.StartTime(cmd.Process.Pid)
	if err != nil {
		return proc{}, fmt.Errorf("%s exited at once (see %s): %w", name, logPath, err)
	}
	p := proc{PID: cmd.Process.Pid, StartTime: st}
	c.state.Procs[name] = p
	if err := c.saveState(); err != nil {
		return p, err
	}
	if err := joinCgroup(c.systemCgroup(), p.PID); err != nil {
		return p, err
	}
	return p, nil
}

// logPath is where a process the cluster started writes its output.
func (c *Cluster) logPath(name string) string {
	return filepath.Join(c.opts.Dir, "logs", name+".log")
}

// waitFor polls ready until it holds, the process name dies, or ReadyTimeout passes; what says
// what is awaited, for the error.
func (c *Cluster) waitFor(ctx context.Context, name, what string, ready func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	for {
		if !c.running(name) {
			return fmt.Errorf("%s exited while waiting for %s; see %s", name, what, c.logPath(name))
		}
		if ready(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waited for %s: %w (see %s)", name, what, ctx.Err(), c.logPath(name))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// answersOK is a readiness check for waitFor: a GET of url answers 200.
func answersOK(hc *http.Client, url string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// stopProc sends SIGTERM, waits up to grace, then SIGKILL.
func stopProc(p proc, grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !p.alive() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	for range 100 {
		if !p.alive() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("process %d did not exit after SIGKILL", p.PID)
}

// killPIDs sends SIGKILL to every pid and waits until none is left.
func killPIDs(pids []int, wait time.Duration) error {
	var procs []proc
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		st, err := procstat.StartTime(pid)
		if err != nil {
			continue
		}
		p := proc{PID: pid, StartTime: st}
		procs = append(procs, p)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(wait)
	for {
		var left []int
		for _, p := range procs {
			if p.alive() {
				left = append(left, p.PID)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still alive after SIGKILL: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errNotRunning = errors.New("not running")

// PID is the pid of the process the cluster started as name (etcd, kube-apiserver, containerd,
// kubelet, ...), while it runs.
func (c *Cluster) PID(name string) (int, bool) {
	p := c.state.Procs[name]
	return p.PID, p.alive()
}
