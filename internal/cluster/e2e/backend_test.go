// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// backend is a server a test runs as its users' backend (Prometheus, VictoriaLogs): its process,
// stopped when the test ends, with the tail of its log shown when the test failed.
type backend struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startBackend starts cmd with its output in dir/<name>.log, in a process group of its own, and
// waits until readyURL answers 200.
func startBackend(t *testing.T, name string, cmd *exec.Cmd, dir, readyURL string) *backend {
	t.Helper()
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	b := &backend{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		b.stop()
		_ = logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("%s log (tail):\n%s", name, tail(string(out), 20))
			}
		}
	})
	require.Eventually(t, func() bool {
		select {
		case <-b.done:
			return true // reported below
		default:
		}
		resp, err := http.Get(readyURL)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 100*time.Millisecond, "%s not ready at %s", name, readyURL)
	select {
	case <-b.done:
		t.Fatalf("%s exited at start (%s)", name, cmd.ProcessState)
	default:
	}
	return b
}

// stop ends the process: SIGTERM, then SIGKILL after 15 s.
func (b *backend) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// get asks a backend's HTTP API, within 10 s, and returns the body and the status code.
func get(rawURL string) ([]byte, int, error) {
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
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}
