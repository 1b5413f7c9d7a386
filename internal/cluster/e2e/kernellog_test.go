// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// TestRealNodeOOMKillRecordNamesTheVictim: with kernel_log, the receiver reads the real kernel's
// reports from /dev/kmsg. A container killed at its limit: its record names the process the
// kernel killed (the workload, its PID on the node) and the limit the kernel names. Children
// killed inside a container whose PID 1 lives: the process kill records name a victim too, and
// the limit hits count at least one per kill.
func TestRealNodeOOMKillRecordNamesTheVictim(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-victim")
	began := time.Now()
	a := startLogsAgent(t, agentOptions{node: s.realNode, name: "victim", cgroupRoot: "/sys/fs/cgroup", kernelLog: true})
	leaky := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil,
		workload("app", "64Mi", map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_INTERVAL": "400ms"}))
	// Three children, one every 2 s or so: within the kernel's report budget, so each report has
	// its header.
	forker := createPod(t, ns, "forker", s.realNode, corev1.RestartPolicyAlways, nil,
		workload("app", "64Mi", map[string]string{"WORKLOAD_MODE": "child-oom", "WORKLOAD_CHILDREN": "3"}))

	match := map[string]string{"k8s.pod.uid": string(leaky.UID), "k8s.container.name": "app"}
	require.Eventually(t, func() bool { return len(a.sink.Records("k8s.container.oom_kill", match)) >= 1 }, 2*time.Minute, 100*time.Millisecond)
	for _, r := range a.sink.Records("k8s.container.oom_kill", match) {
		t.Logf("container kill %.12s: %v", r.Attrs["container.id"], r.Attrs)
		assert.Equal(t, "found", r.Attrs["k8s.oom.kernel_report"])
		assert.Equal(t, "workload", r.Attrs["process.executable.name"])
		pid, err := strconv.Atoi(r.Attrs["process.pid"])
		require.NoError(t, err)
		assert.Positive(t, pid)
		assert.Equal(t, "container", r.Attrs["k8s.oom.scope"])
	}

	fmatch := map[string]string{"k8s.pod.uid": string(forker.UID), "k8s.container.name": "app"}
	require.Eventually(t, func() bool {
		n := int64(0)
		for _, r := range a.sink.Records("k8s.container.process.oom_kill", fmatch) {
			n += intAttr(t, r, "k8s.container.process.oom_kill.count")
		}
		return n >= 3
	}, 2*time.Minute, 100*time.Millisecond, "no process kill records for the forker's 3 children")
	for _, r := range a.sink.Records("k8s.container.process.oom_kill", fmatch) {
		t.Logf("process kills: %v", r.Attrs)
		assert.Equal(t, "found", r.Attrs["k8s.oom.kernel_report"])
		assert.NotEmpty(t, r.Attrs["process.pid"])
		assert.Equal(t, "false", r.Attrs["k8s.oom.main_process"])
		// PID 1 lives on: the container was read before each scrape that saw a kill.
		assert.NotEmpty(t, r.Attrs["k8s.container.memory.working_set.peak"], "the running container's trajectory")
	}
	// Each child reached the limit before it was killed: the kernel's counts of limit hits show
	// them. The pod's cgroup, whose limit is the container's, reaches it first (the sandbox's
	// pages count there too), so the pod's count is the one that rises.
	own, ok := a.latestOf("k8s.container.memory.limit_hits", string(forker.UID), "app")
	require.True(t, ok, "no k8s.container.memory.limit_hits for the forker")
	pod, ok := a.latestOf("k8s.pod.memory.limit_hits", string(forker.UID), "app")
	require.True(t, ok, "no k8s.pod.memory.limit_hits for the forker")
	t.Logf("the forker's limit hits: the container's %v, its pod's %v", own.Value, pod.Value)
	assert.GreaterOrEqual(t, own.Value+pod.Value, 3.0)
	t.Logf("test time: %s", time.Since(began).Round(time.Millisecond))
}
