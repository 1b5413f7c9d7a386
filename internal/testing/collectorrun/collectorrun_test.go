// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package collectorrun

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A shell script stands in for the collector: the process handling is what is under test.
func fakeCollector(t *testing.T, script string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "otelcol")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"+script), 0o700))
	return bin
}

func TestStopEndsAProcessThatHonoursSIGTERM(t *testing.T) {
	t.Parallel()
	bin := fakeCollector(t, `trap 'exit 0' TERM; test -f "$2" || exit 3; touch ready; while :; do sleep 0.05; done`)
	dir := t.TempDir()
	c, err := Start(context.Background(), Options{Binary: bin, Config: "receivers: {}", Dir: dir})
	require.NoError(t, err)
	waitReady(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Stop(ctx))
	assert.True(t, c.Exited())
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	bin := fakeCollector(t, `trap '' TERM; touch ready; while :; do sleep 0.05; done`)
	dir := t.TempDir()
	c, err := Start(context.Background(), Options{Binary: bin, Dir: dir})
	require.NoError(t, err)
	waitReady(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.Stop(ctx), context.DeadlineExceeded)
	assert.True(t, c.Exited())
}

func TestStartReportsAnEarlyExit(t *testing.T) {
	t.Parallel()
	bin := fakeCollector(t, `echo "bad config" >&2; exit 1`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Start(ctx, Options{Binary: bin, Dir: t.TempDir(), HealthURL: "http://127.0.0.1:1/"})
	require.ErrorContains(t, err, "exited before it was healthy")
}

// waitReady waits until the script has set its signal handling up.
func waitReady(t *testing.T, dir string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
}

func TestOverridesFollowTheConfigInOrder(t *testing.T) {
	t.Parallel()
	// The script writes its arguments and the files they name, as the collector would read them.
	bin := fakeCollector(t, `trap 'exit 0' TERM; for a; do echo "$a"; done > args; cat "$2" "$4" "$6" > merged; touch ready; while :; do sleep 0.05; done`)
	dir := t.TempDir()
	c, err := Start(context.Background(), Options{Binary: bin, Config: "base\n", Overrides: []string{"first\n", "second\n"}, Dir: dir})
	require.NoError(t, err)
	waitReady(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Stop(ctx))
	args, err := os.ReadFile(filepath.Join(dir, "args"))
	require.NoError(t, err)
	assert.Equal(t, "--config\n"+filepath.Join(dir, "config.yaml")+"\n--config\n"+filepath.Join(dir, "override-1.yaml")+
		"\n--config\n"+filepath.Join(dir, "override-2.yaml")+"\n", string(args))
	merged, err := os.ReadFile(filepath.Join(dir, "merged"))
	require.NoError(t, err)
	assert.Equal(t, "base\nfirst\nsecond\n", string(merged))
}
