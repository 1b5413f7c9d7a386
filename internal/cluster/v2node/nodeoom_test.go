// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2node

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
)

// It runs first of the OOM kill tests, on the node they start with.

// TestV2NodeNodeOutOfMemoryKill: with the default kubelet the kubepods cgroup's limit is the
// guest's memory, which the guest's own processes share: a BestEffort container that leaks
// fast runs the node out of memory before that limit, and the kernel's global OOM kill names no
// cgroup whose limit was hit: node.
func TestV2NodeNodeOutOfMemoryKill(t *testing.T) {
	s := nodeWith(t, false)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	pod := s.workloadPodLimited(ctx, t, "v2-node-oom", "", corev1.RestartPolicyNever,
		map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_STEP_MB": "64"})
	r := s.killRecordOf(ctx, t, pod, 3*time.Minute)
	assert.Equal(t, "node", r.Attrs["k8s.oom.scope"])
}
