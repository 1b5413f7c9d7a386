// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
)

// Kills at the two limits above a pod, on the v2 node, as their kill records at the cgroup
// source's backend name them (k8s.oom.scope): the node's allocatable memory for pods (the
// kubepods cgroup's limit) and the node itself running out.

// killRecordOf waits for the kill record of the pod's container "app" at the cgroup source's
// backend, and logs the pod's end.
func (s *suite) killRecordOf(ctx context.Context, t *testing.T, pod *corev1.Pod, within time.Duration) otlpsink.Record {
	t.Helper()
	ended := s.waitPod(ctx, t, pod.Name, within, func(p *corev1.Pod) bool {
		st, err := containerStatus(p, "app")
		return err == nil && st.State.Terminated != nil
	})
	st, err := containerStatus(ended, "app")
	require.NoError(t, err)
	t.Logf("the container ended %s, exit code %d", st.State.Terminated.Reason, st.State.Terminated.ExitCode)
	require.Equal(t, "OOMKilled", st.State.Terminated.Reason)
	match := map[string]string{"k8s.pod.uid": string(pod.UID), "k8s.container.name": "app"}
	var records []otlpsink.Record
	if !assert.Eventually(t, func() bool {
		records = s.sinks[sourceCgroup].Records("k8s.container.oom_kill", match)
		return len(records) > 0
	}, time.Minute, 250*time.Millisecond, "no kill record at the cgroup source's backend") {
		s.logAgents(ctx, t)
		t.FailNow()
	}
	require.Len(t, records, 1)
	t.Logf("kill record: %v", records[0].Attrs)
	return records[0]
}

// victimOf waits for the kill record of the pod's container "app" at the backend of the agent
// that reads the kernel's log, and checks that it names the process the kernel killed: the
// workload's only one. It returns the limit the kernel's report names.
func (s *suite) victimOf(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	match := map[string]string{"k8s.pod.uid": string(pod.UID), "k8s.container.name": "app"}
	var records []otlpsink.Record
	if !assert.Eventually(t, func() bool {
		records = s.sinks[sourceKernelLog].Records("k8s.container.oom_kill", match)
		return len(records) > 0
	}, time.Minute, 250*time.Millisecond, "no kill record from the agent with kernel_log") {
		s.logAgents(context.Background(), t)
		t.FailNow()
	}
	require.Len(t, records, 1)
	r := records[0]
	t.Logf("kill record with kernel_log: %v", r.Attrs)
	assert.Equal(t, "found", r.Attrs["k8s.oom.kernel_report"])
	assert.Equal(t, "workload", r.Attrs["process.executable.name"])
	assert.NotEmpty(t, r.Attrs["process.pid"])
	return r.Attrs["k8s.oom.scope"]
}

// TestV2NodeNodeAllocatableKill: a kubelet with 2560Mi of systemReserved memory leaves the pods
// what the guest's 3 GiB hold beyond it, the kubepods cgroup's limit. A BestEffort container,
// without a limit of its own, that leaks past it is killed at that limit: node_allocatable.
func TestV2NodeNodeAllocatableKill(t *testing.T) {
	s := nodeWithKubelet(t, kubeletConfig{systemReserved: "2560Mi"})
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	pod := s.workloadPodLimited(ctx, t, "v2-allocatable", "", corev1.RestartPolicyNever,
		map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_STEP_MB": "16"})
	r := s.killRecordOf(ctx, t, pod, 3*time.Minute)
	assert.Equal(t, "node_allocatable", r.Attrs["k8s.oom.scope"])
	assert.Equal(t, "BestEffort", r.Attrs["k8s.pod.qos_class"])
	assert.NotEmpty(t, r.Attrs["k8s.container.memory.working_set.peak"], "the trajectory")
	assert.Equal(t, "node_allocatable", s.victimOf(t, pod), "the limit the kernel's report names")
}

// logAgents logs the agents' pod states and the tails of their logs.
func (s *suite) logAgents(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, name := range []string{"oomwatch-agent", "oomwatch-agent-kernel-log"} {
		if p, err := s.cs.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Logf("%s: %s %+v", name, p.Status.Phase, p.Status.ContainerStatuses)
		}
	}
	for _, log := range []string{"agent.log", "agent-kernel-log.log"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(s.agentLog()), log))
		lines := strings.Split(string(b), "\n")
		t.Logf("%s (%v), the last lines:\n%s", log, err, strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}
