// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomwatch/oomwatch/internal/testing/backend"
	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
)

// TestRealNodeOOMKillScope: each kill record names the limit the kill hit, as the kernel's
// counts of limit hits in the cgroups above the victim show it. One pod's container leaks past
// its own limit; another pod has a memory limit of its own (pod-level resources) and a container
// without one, which leaks past the pod's. The records say container and pod, and only the first
// container gets a suggested limit. A second agent, with kernel_log, sees the same kills: its
// records name the same limits, the process the kernel killed and how the memory came there.
func TestRealNodeOOMKillScope(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-scope")
	began := time.Now()
	a := startLogsAgent(t, agentOptions{node: s.realNode, name: "scope", cgroupRoot: "/sys/fs/cgroup"})
	withLog := startLogsAgent(t, agentOptions{node: s.realNode, name: "scope-kernel-log", cgroupRoot: "/sys/fs/cgroup", kernelLog: true})

	// Each leaks 4 MiB every 400 ms, so the agent reads its pod's cgroup a few times before the
	// kill: a kill that no reading precedes names no scope.
	leak := map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_INTERVAL": "400ms"}
	own := createPod(t, ns, "own-limit", s.realNode, corev1.RestartPolicyAlways, nil, workload("app", "64Mi", leak))
	unlimited := workload("app", "64Mi", leak)
	unlimited.Resources = corev1.ResourceRequirements{}
	zero := int64(0)
	podLimit, err := s.admin.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-limit", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                      s.realNode,
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &zero,
			Resources: &corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
			Containers: []corev1.Container{unlimited},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	for _, c := range []struct {
		pod  *corev1.Pod
		want string
	}{{own, "container"}, {podLimit, "pod"}} {
		match := map[string]string{"k8s.pod.uid": string(c.pod.UID), "k8s.container.name": "app"}
		require.Eventually(t, func() bool {
			return len(a.sink.Records("k8s.container.oom_kill", match)) >= 1
		}, 2*time.Minute, 100*time.Millisecond, "no kill record for %s", c.pod.Name)
		for _, r := range a.sink.Records("k8s.container.oom_kill", match) {
			t.Logf("%s: kill record of %.12s at %s: k8s.oom.scope=%q", c.pod.Name, r.Attrs["container.id"], r.Attrs["k8s.container.end_time"], r.Attrs["k8s.oom.scope"])
			assert.Equal(t, c.want, r.Attrs["k8s.oom.scope"], c.pod.Name)
		}
		require.Eventually(t, func() bool {
			return len(withLog.sink.Records("k8s.container.oom_kill", match)) >= 1
		}, time.Minute, 100*time.Millisecond, "no kill record for %s with kernel_log", c.pod.Name)
		for _, r := range withLog.sink.Records("k8s.container.oom_kill", match) {
			t.Logf("%s, with kernel_log: %v", c.pod.Name, r.Attrs)
			assert.Equal(t, c.want, r.Attrs["k8s.oom.scope"], "%s: the limit the kernel's report names", c.pod.Name)
			assert.Equal(t, "found", r.Attrs["k8s.oom.kernel_report"], c.pod.Name)
			assert.Equal(t, "workload", r.Attrs["process.executable.name"], c.pod.Name)
			assert.NotEmpty(t, r.Attrs["process.pid"], c.pod.Name)
			assert.NotEmpty(t, r.Attrs["k8s.container.memory.working_set.peak"], "%s: the trajectory", c.pod.Name)
		}
	}
	// The container killed at its own 64 MiB limit: a suggested limit of at least 80 MiB. The pod
	// killed at its pod-level limit: none for its container.
	var suggested otlpsink.Point
	require.Eventually(t, func() bool {
		var ok bool
		suggested, ok = a.latestOf("k8s.container.memory.limit.suggested", string(own.UID), "app")
		return ok
	}, scrapes(3), 100*time.Millisecond, "no suggested limit for own-limit")
	t.Logf("own-limit's suggested limit: %.0f bytes", suggested.Value)
	assert.GreaterOrEqual(t, suggested.Value, float64(80<<20))
	_, ok := a.latestOf("k8s.container.memory.limit.suggested", string(podLimit.UID), "app")
	assert.False(t, ok, "a suggested container limit for a kill at the pod's limit")
	if t.Failed() {
		b, err := os.ReadFile(a.log.Name())
		t.Logf("agent log (%v):\n%s", err, backend.Tail(string(b), 40))
	}
	t.Logf("test time: %s", time.Since(began).Round(time.Millisecond))
}
