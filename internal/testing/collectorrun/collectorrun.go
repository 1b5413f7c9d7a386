// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package collectorrun runs the built otelcol-oomwatch binary as a separate process, the way a
// user runs it: a configuration file, environment variables, a health check to wait for, and a
// stop by SIGTERM or a crash by SIGKILL. The demo and the end-to-end tests use it.
package collectorrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Options describe one collector process.
type Options struct {
	// Binary is the collector executable.
	Binary string
	// Config is the collector configuration (YAML).
	Config string
	// Overrides are further configurations the collector merges over Config, in order, as
	// it does with each further --config flag.
	Overrides []string
	// Dir receives config.yaml; the process runs there.
	Dir string
	// Env is added to this process's environment.
	Env []string
	// HealthURL is polled until it answers 200 (the health_check extension); empty: no wait.
	HealthURL string
	// Log receives the collector's stdout and stderr; nil discards them.
	Log io.Writer
}

// Collector is a running collector process.
type Collector struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start writes the configuration, starts the collector and waits until it is healthy.
func Start(ctx context.Context, opts Options) (*Collector, error) {
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, err
	}
	cfg := filepath.Join(opts.Dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(opts.Config), 0o600); err != nil {
		return nil, err
	}
	args := []string{"--config", cfg}
	for i, o := range opts.Overrides {
		f := filepath.Join(opts.Dir, fmt.Sprintf("override-%d.yaml", i+1))
		if err := os.WriteFile(f, []byte(o), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config", f)
	}
	cmd := exec.Command(opts.Binary, args...) //nolint:gosec // the binary is ours, named by the caller
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), opts.Env...)
	if opts.Log != nil {
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
	}
	// Its own process group: a Ctrl-C meant for the caller reaches the collector through Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", opts.Binary, err)
	}
	c := &Collector{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	if opts.HealthURL == "" {
		return c, nil
	}
	if err := c.waitHealthy(ctx, opts.HealthURL); err != nil {
		_ = c.Kill()
		return nil, err
	}
	return c, nil
}

func (c *Collector) waitHealthy(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return fmt.Errorf("collector exited before it was healthy: %w", c.err)
		case <-ctx.Done():
			return fmt.Errorf("collector not healthy at %s: %w", url, ctx.Err())
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
}

// PID is the collector's process ID.
func (c *Collector) PID() int { return c.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (c *Collector) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Stop asks the collector to shut down (SIGTERM) and waits for it; past the context's deadline
// it is killed.
func (c *Collector) Stop(ctx context.Context) error {
	if c.Exited() {
		return nil
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return errors.Join(ctx.Err(), c.Kill())
	}
}

// Kill ends the collector at once (SIGKILL), as a crash or an OOM kill would: no shutdown, no
// final checkpoint.
func (c *Collector) Kill() error {
	if c.Exited() {
		return nil
	}
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-c.done
	return nil
}
