// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package backend runs a server that a test uses as its users' backend (Prometheus,
// VictoriaLogs) as a process of its own: started with its log in the test's folder, stopped when
// the test ends, the tail of its log shown when the test failed.
package backend

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Process is a started backend.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts cmd with its output in dir/<name>.log, in a process group of its own, and waits
// until readyURL answers 200.
func Start(t testing.TB, name string, cmd *exec.Cmd, dir, readyURL string) *Process {
	t.Helper()
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		_ = logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("%s log (tail):\n%s", name, Tail(string(out), 20))
			}
		}
	})
	require.Eventually(t, func() bool {
		select {
		case <-p.done:
			return true // reported below
		default:
		}
		_, code, err := Get(readyURL)
		return err == nil && code == http.StatusOK
	}, time.Minute, 100*time.Millisecond, "%s not ready at %s", name, readyURL)
	select {
	case <-p.done:
		t.Fatalf("%s exited at start (%s)", name, cmd.ProcessState)
	default:
	}
	return p
}

// Stop ends the process: SIGTERM, then SIGKILL after 15 s.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Get asks a backend's HTTP API, within 10 s, and returns the body and the status code.
func Get(rawURL string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, http.NoBody)
	if err != nil {
		return nil, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}

// Tail is the last lines of s.
func Tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
