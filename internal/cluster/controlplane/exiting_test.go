// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/internal/procstat"
)

// leaderExitsEnv makes this test binary the helper of TestAProcessIsAliveUntilItsLastThreadExits.
const leaderExitsEnv = "OOMWATCH_TEST_LEADER_EXITS"

// leaderExits is a process whose main thread exits while its other threads go on, holding a
// listening socket: what a multi-threaded server (kube-apiserver, etcd) is for a moment after
// SIGKILL, its main thread already a zombie while the others still close its files.
func leaderExits() {
	runtime.LockOSThread()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(2)
	}
	fmt.Println(l.Addr())
	go func() {
		for {
			time.Sleep(time.Second)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	// The main thread alone exits, not the process (exit, not exit_group).
	_, _, _ = syscall.RawSyscall(syscall.SYS_EXIT, 0, 0, 0)
}

func TestMain(m *testing.M) {
	if os.Getenv(leaderExitsEnv) == "1" {
		leaderExits()
		return
	}
	os.Exit(m.Run())
}

// TestAProcessIsAliveUntilItsLastThreadExits: a process whose main thread is a zombie while its
// other threads still run (and hold its port) is alive; a restart that took it for gone found
// the API server's port still bound. Once the last thread is gone it is not.
func TestAProcessIsAliveUntilItsLastThreadExits(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), leaderExitsEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	addr := line[:len(line)-1]
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	pid := cmd.Process.Pid
	require.Eventually(t, func() bool {
		f, err := procstat.Fields(pid)
		return err == nil && f[0] == "Z"
	}, 10*time.Second, 10*time.Millisecond, "the main thread did not exit")
	st, err := procstat.StartTime(pid)
	require.NoError(t, err)
	p := proc{PID: pid, StartTime: st}
	_, err = net.Listen("tcp", addr)
	require.Error(t, err, "the port is still held")
	assert.True(t, p.alive(), "its other threads run")

	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.NoError(t, stopProc(p, 0))
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "stopped: its port is free")
	_ = l.Close()
	assert.False(t, p.alive())
}
