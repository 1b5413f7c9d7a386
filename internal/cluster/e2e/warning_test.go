// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomwatch/oomwatch/internal/testing/promserver"
)

// TestRealNodeMemoryPressureWarnsBeforeTheKill: a container that holds 56 MiB, over 90 % of its
// 64Mi limit with the Go runtime's own, and leaks 1 MiB a minute while its page cache keeps the
// cgroup at the limit reaches the limit again and again, the kernel reclaiming cache each time,
// until it cannot and kills it, minutes later. Prometheus, scraping the agent (cgroup source)
// and evaluating deploy/prometheus/rules.yaml, fires KubernetesWorkloadMemoryPressure before the
// kill. The working set is the container's own memory, the page cache it churns mostly
// inactive: a container that fills the last 10 % of its limit in less than the alert's 2
// minutes is killed unwarned (holding 44 or 50 MiB and leaking every 15 or 20 s, it was).
func TestRealNodeMemoryPressureWarnsBeforeTheKill(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-warning")
	promPort := freePort(t)
	startLogsAgent(t, agentOptions{node: s.realNode, name: "warning", cgroupRoot: "/sys/fs/cgroup", prometheus: promPort})
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	prom := startPrometheusWith(t, promOptions{
		targets: []string{fmt.Sprintf("127.0.0.1:%d", promPort)},
		rules:   []string{filepath.Join(root, "deploy", "prometheus", "rules.yaml")},
	})

	app := workload("app", "64Mi", map[string]string{
		"WORKLOAD_MODE": "leak-cache", "WORKLOAD_MB": "56", "WORKLOAD_CACHE_MB": "16",
		"WORKLOAD_STEP_MB": "1", "WORKLOAD_INTERVAL": "60s", "WORKLOAD_CACHE_DIR": "/cache",
	})
	app.VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}
	zero := int64(0)
	pod, err := s.admin.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "slow", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                      s.realNode,
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &zero,
			Containers:                    []corev1.Container{app},
			Volumes:                       []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	began := time.Now()

	firing := fmt.Sprintf(`ALERTS{alertname="KubernetesWorkloadMemoryPressure",alertstate="firing",k8s_namespace_name=%q,workload="pod/slow"}`, ns)
	hits := fmt.Sprintf(`workload:k8s_container_memory_limit_hits:rate5m{k8s_namespace_name=%q}`, ns)
	used := fmt.Sprintf(`workload:k8s_container_memory_limit_utilization:max{k8s_namespace_name=%q}`, ns)
	var firedAt time.Time
	var killed *corev1.ContainerStateTerminated
	lastLog := time.Time{}
	require.Eventually(t, func() bool {
		if firedAt.IsZero() {
			if got, err := prom.Instant(firing); err == nil && len(got) > 0 {
				firedAt = time.Now()
				t.Logf("KubernetesWorkloadMemoryPressure firing %s after the pod was created", firedAt.Sub(began).Round(time.Second))
			}
		}
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			h, _ := prom.Instant(hits)
			u, _ := prom.Instant(used)
			t.Logf("+%s: limit hits a second %v, working set against the limit %v", time.Since(began).Round(time.Second), promserver.Values(h), promserver.Values(u))
		}
		p, err := s.admin.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		if st, err := status(p, "app"); err == nil && st.State.Terminated != nil {
			killed = st.State.Terminated
			return true
		}
		return false
	}, 10*time.Minute, time.Second, "the container was not killed")
	t.Logf("the container ended %s (%s, exit code %d), %s after the pod was created", killed.FinishedAt.UTC().Format(time.RFC3339),
		killed.Reason, killed.ExitCode, killed.FinishedAt.Sub(began).Round(time.Second))
	assert.Equal(t, "OOMKilled", killed.Reason)
	require.False(t, firedAt.IsZero(), "KubernetesWorkloadMemoryPressure never fired before the kill")
	assert.True(t, firedAt.Before(killed.FinishedAt.Time), "fired at %s, killed at %s", firedAt, killed.FinishedAt)
	t.Logf("the warning came %s before the kill", killed.FinishedAt.Sub(firedAt).Round(time.Second))
}
