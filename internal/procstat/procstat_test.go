// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package procstat

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOwnProcess(t *testing.T) {
	pid := os.Getpid()
	f, err := Fields(pid)
	require.NoError(t, err)
	assert.Contains(t, []string{"R", "S"}, f[0], "state")
	assert.Equal(t, strconv.Itoa(os.Getppid()), f[1], "parent")

	began, err := StartTime(pid)
	require.NoError(t, err)
	assert.NotZero(t, began)

	cpu0, err := CPUTime(pid)
	require.NoError(t, err)
	for spin := time.Now(); time.Since(spin) < 300*time.Millisecond; {
	}
	cpu1, err := CPUTime(pid)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, cpu1-cpu0, 200*time.Millisecond, "300 ms spinning")

	assert.True(t, Running(pid, began))
	assert.False(t, Running(pid, began+1), "a pid with another start time is another process")
	assert.False(t, Running(0, began))

	rss, err := RSS(pid)
	require.NoError(t, err)
	assert.Greater(t, rss, int64(1<<20))
}

func TestAnotherProcess(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	mine, err := StartTime(os.Getpid())
	require.NoError(t, err)
	its, err := StartTime(cmd.Process.Pid)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, its, mine, "started after this test")

	_, err = Fields(1 << 30)
	assert.ErrorIs(t, err, os.ErrNotExist)
}
