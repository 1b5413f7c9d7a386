// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2node

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/oomwatch/oomwatch/internal/testing/promserver"
)

// TestV2NodeMemoryStallWarnsBeforeTheKill: a container that holds 116 MiB of its 128Mi limit and
// reads a 32 MiB file of its emptyDir (the node's ext4 disk) over and over keeps its cgroup at the
// limit: each read evicts page cache that the next one reads back, and its tasks wait for memory
// (reclaim at the limit, pages read back in), the longer the closer it is to the limit. It leaks
// 1 MiB every 2 minutes until the kernel cannot reclaim enough and kills it. Prometheus
// (Debian's), scraping the agent's cgroup source and evaluating deploy/prometheus/rules.yaml,
// fires KubernetesWorkloadMemoryStalled, from the container's memory.pressure, before the kill.
// The alert needs the stall over 10 % of 5 minutes, for 2 minutes: leaking 1 MiB every 40 s
// from 112 MiB, the container stalled 8 to 19 % of the time and was killed 4m51s after its start,
// a minute after the stall crossed 10 %, unwarned.
func TestV2NodeMemoryStallWarnsBeforeTheKill(t *testing.T) {
	s := nodeWith(t, false)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	prom := promserver.Start(t, promserver.Options{
		Targets: []string{fmt.Sprintf("127.0.0.1:%d", s.promPort)},
		Rules:   []string{filepath.Join(s.cpOpts.ModuleDir, "deploy", "prometheus", "rules.yaml")},
	})

	const name = "v2-stall"
	pod := s.newWorkloadPod(name, "128Mi", corev1.RestartPolicyNever, map[string]string{
		"WORKLOAD_MODE": "leak-cache", "WORKLOAD_MB": "116", "WORKLOAD_CACHE_MB": "32",
		"WORKLOAD_STEP_MB": "1", "WORKLOAD_INTERVAL": "120s", "WORKLOAD_CACHE_DIR": "/cache",
	})
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pod = s.createPod(ctx, t, pod)
	created := time.Now()

	sel := fmt.Sprintf(`{k8s_namespace_name=%q,k8s_pod_name=%q}`, pod.Namespace, name)
	firing := fmt.Sprintf(`ALERTS{alertname="KubernetesWorkloadMemoryStalled",alertstate="firing",k8s_namespace_name=%q,workload="pod/%s"}`, pod.Namespace, name)
	stalled := "workload:container_memory_pressure_stall:rate5m" + sel
	used := "workload:k8s_container_memory_limit_utilization:max" + sel
	var firedAt time.Time
	var lastLog time.Time
	ended := s.waitPod(ctx, t, name, 20*time.Minute, func(p *corev1.Pod) bool {
		if firedAt.IsZero() {
			if got, err := prom.Instant(firing); err == nil && len(got) > 0 {
				firedAt = time.Now()
				t.Logf("KubernetesWorkloadMemoryStalled firing %s after the pod was created", firedAt.Sub(created).Round(time.Second))
			}
		}
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			st, _ := prom.Instant(stalled)
			u, _ := prom.Instant(used)
			t.Logf("+%s: stalled waiting for memory %v of the time, working set against the limit %v",
				time.Since(created).Round(time.Second), promserver.Values(st), promserver.Values(u))
		}
		st, err := containerStatus(p, "app")
		return err == nil && st.State.Terminated != nil
	})
	st, err := containerStatus(ended, "app")
	require.NoError(t, err)
	killed := st.State.Terminated
	t.Logf("the container ended %s (%s, exit code %d), %s after the pod was created", killed.FinishedAt.UTC().Format(time.RFC3339),
		killed.Reason, killed.ExitCode, killed.FinishedAt.Sub(created).Round(time.Second))
	assert.Equal(t, "OOMKilled", killed.Reason)
	require.False(t, firedAt.IsZero(), "KubernetesWorkloadMemoryStalled never fired before the kill")
	assert.True(t, firedAt.Before(killed.FinishedAt.Time), "fired at %s, killed at %s", firedAt, killed.FinishedAt)
	t.Logf("the warning came %s before the kill", killed.FinishedAt.Sub(firedAt).Round(time.Second))
}
