// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node running out of memory: the kernel's global OOM killer, which the kubelet records as a
// SystemOOM event on its Node whatever process it killed. These run first of the OOM kill tests,
// on the node they start with.

// systemOOMKills is the latest k8s.node.system_oom_kills of the node at a backend, -1 if none.
func (s *suite) systemOOMKills(src string) float64 {
	if p, ok := s.sinks[src].Latest("k8s.node.system_oom_kills", map[string]string{"k8s.node.name": s.nodeOpts.NodeName}); ok {
		return p.Value
	}
	return -1
}

// systemOOMs returns, at each backend, the node's system OOM kills once it reports them.
func (s *suite) systemOOMs(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, src := range sources {
		require.Eventually(t, func() bool { return s.systemOOMKills(src) >= 0 }, time.Minute, 250*time.Millisecond,
			"%s: no k8s.node.system_oom_kills of the node", src)
		out[src] = s.systemOOMKills(src)
	}
	return out
}

// systemOOMCounted waits for the kubelet's SystemOOM event naming victim, then checks that each
// backend counted one system OOM kill more than before, and that the cgroup source's backend got
// a record of it naming the victim.
func (s *suite) systemOOMCounted(ctx context.Context, t *testing.T, before map[string]float64, victim string) {
	t.Helper()
	var event corev1.Event
	require.Eventually(t, func() bool {
		events, err := s.cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Node,reason=SystemOOM,involvedObject.name=" + s.nodeOpts.NodeName,
		})
		if err != nil {
			return false
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, "victim process: "+victim+",") {
				event = e
				return true
			}
		}
		return false
	}, 3*time.Minute, time.Second, "no SystemOOM event naming %s on the node", victim)
	t.Logf("the kubelet's event: %q, count %d", event.Message, event.Count)
	require.Equal(t, int32(1), event.Count)
	for _, src := range sources {
		require.Eventually(t, func() bool { return s.systemOOMKills(src) >= before[src]+1 }, time.Minute, 250*time.Millisecond,
			"%s: k8s.node.system_oom_kills of the node stayed %v", src, s.systemOOMKills(src))
	}
	time.Sleep(2 * agentInterval)
	for _, src := range sources {
		assert.Equal(t, before[src]+1, s.systemOOMKills(src), "%s: one system OOM kill", src)
	}
	var found bool
	for _, r := range s.sinks[sourceCgroup].Records("k8s.node.system_oom_kill", map[string]string{"k8s.node.name": s.nodeOpts.NodeName}) {
		if r.Attrs["process.executable.name"] == victim {
			found = true
			t.Logf("system OOM kill record: %v", r.Attrs)
			assert.NotEmpty(t, r.Attrs["process.pid"])
		}
	}
	assert.True(t, found, "no k8s.node.system_oom_kill record naming %s", victim)
}

// TestV2NodeNodeOutOfMemoryKill: with the default kubelet the kubepods cgroup's limit is the
// guest's memory, which the guest's own processes share: a BestEffort container that leaks
// fast runs the node out of memory before that limit, and the kernel's global OOM kill names no
// cgroup whose limit was hit. Its kill record says node. The kubelet records the same kill as a
// SystemOOM event, so it is also one system OOM kill of the node.
func TestV2NodeNodeOutOfMemoryKill(t *testing.T) {
	s := nodeWith(t, false)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	before := s.systemOOMs(t)
	pod := s.workloadPodLimited(ctx, t, "v2-node-oom", "", corev1.RestartPolicyNever,
		map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_STEP_MB": "64"})
	r := s.killRecordOf(ctx, t, pod, 3*time.Minute)
	assert.Equal(t, "node", r.Attrs["k8s.oom.scope"])
	assert.NotEmpty(t, r.Attrs["k8s.container.memory.working_set.peak"], "the trajectory")
	assert.Equal(t, "node", s.victimOf(t, pod), "the kernel's report names no cgroup's limit")
	s.systemOOMCounted(ctx, t, before, "workload")
}

// TestV2NodeSystemOOM: a process of the guest's root cgroup, outside every pod, allocates until
// the node runs out of memory and the kernel kills it: a SystemOOM event, one system OOM kill at
// each backend, and its record, and no container's kill.
func TestV2NodeSystemOOM(t *testing.T) {
	s := nodeWith(t, false)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	before := s.systemOOMs(t)
	containerKills := len(s.sinks[sourceCgroup].Records("k8s.container.oom_kill", nil))
	require.NoError(t, s.node.LeakInRootCgroup())
	s.systemOOMCounted(ctx, t, before, "guestwatch")
	assert.Len(t, s.sinks[sourceCgroup].Records("k8s.container.oom_kill", nil), containerKills, "no container was killed")
}
