// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/oomwatch/oomwatch/deploy"
)

// TestRealNodePodEventsOncePerKill: with pod_events, and the role deploy/components/pod-events
// grants the agent's identity, the real API server holds one OOMKill Event per kill on the pod,
// as `kubectl describe pod` lists them: Warning, reported by oomwatch, with the explanation. A
// collector restart (with its state) writes none again.
func TestRealNodePodEventsOncePerKill(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	ns := namespace(t, "e2e-podevents")
	began := time.Now()
	rbac, err := deploy.Manifests.ReadFile("components/pod-events/rbac.yaml")
	require.NoError(t, err)
	require.NoError(t, s.cluster.Apply(ctx, rbac))
	t.Cleanup(func() {
		// The other tests' collectors keep the base's least privilege.
		_ = s.admin.RbacV1().ClusterRoleBindings().Delete(ctx, "oomwatch-agent-pod-events", metav1.DeleteOptions{})
		_ = s.admin.RbacV1().ClusterRoles().Delete(ctx, "oomwatch-agent-pod-events", metav1.DeleteOptions{})
	})
	a := startLogsAgent(t, agentOptions{node: s.realNode, name: "events", storage: true, cgroupRoot: "/sys/fs/cgroup", podEvents: true})
	pod := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil,
		workload("app", "64Mi", map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_INTERVAL": "400ms"}))
	match := map[string]string{"k8s.pod.uid": string(pod.UID), "k8s.container.name": "app"}
	records := func() int { return len(a.sink.Records("k8s.container.oom_kill", match)) }
	// The Events on the pod, as `kubectl describe pod` finds them.
	events := func() []corev1.Event {
		list, err := s.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.uid": string(pod.UID), "reason": "OOMKill"}.String(),
		})
		require.NoError(t, err)
		return list.Items
	}

	require.Eventually(t, func() bool { return records() >= 1 }, 2*time.Minute, 100*time.Millisecond, "no kill record")
	require.Eventually(t, func() bool { return len(events()) == records() }, 30*time.Second, 100*time.Millisecond,
		"the API server does not hold one Event per kill record")
	ev := events()[0]
	t.Logf("Event %s: %s", ev.Name, ev.Message)
	assert.Equal(t, corev1.EventTypeWarning, ev.Type)
	assert.Equal(t, "oomwatch", ev.ReportingController)
	assert.Equal(t, "oomwatch", ev.Source.Component)
	assert.Equal(t, "Pod", ev.InvolvedObject.Kind)
	assert.Equal(t, "leaky", ev.InvolvedObject.Name)
	assert.Equal(t, "spec.containers{app}", ev.InvolvedObject.FieldPath)
	assert.True(t, strings.HasPrefix(ev.Message, "Container app OOM-killed"), ev.Message)
	assert.Contains(t, ev.Message, "the container reached its own memory limit (64.0 MiB)")

	// A restart of the collector, which keeps its state: the kills it reported are not written
	// again; the next kill is.
	seen := records()
	require.NoError(t, a.stop())
	a.start()
	require.Eventually(t, func() bool { return records() > seen }, 2*time.Minute, 100*time.Millisecond, "no kill after the restart")
	a.waitReports(string(pod.UID), "app", time.Now(), 2)
	n := records()
	got := events()
	assert.Len(t, got, n, "one Event per kill, across the restart")
	names := map[string]bool{}
	for _, ev := range got {
		assert.False(t, names[ev.Name], "Event %s twice", ev.Name)
		names[ev.Name] = true
		assert.Equal(t, int32(1), ev.Count)
	}
	t.Logf("%d kills, %d Events; test time %s", n, len(got), time.Since(began).Round(time.Millisecond))
}
