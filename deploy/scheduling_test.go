// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestAgentOutranksTheWorkloads: the agent's pods have a priority class of their own, above the
// default 0 of workloads and below the system classes, which preempts to make room.
func TestAgentOutranksTheWorkloads(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, agentDir)
	var pc schedulingv1.PriorityClass
	get(t, objs, "PriorityClass//oomwatch-agent", &pc)
	assert.Equal(t, pc.Name, podTemplate(t, agentDir, objs).Spec.PriorityClassName)
	assert.Greater(t, pc.Value, int32(0))
	assert.Less(t, pc.Value, int32(1_000_000_000), "user classes end at a billion; above are the system-* ones")
	assert.False(t, pc.GlobalDefault)
	assert.Nil(t, pc.PreemptionPolicy, "the default: PreemptLowerPriority")
}

// TestGatewaySurvivesADrain: the gateway's replicas spread over nodes and zones where they can,
// and a disruption budget lets a drain take one replica at a time.
func TestGatewaySurvivesADrain(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, gatewayDir)
	var d appsv1.Deployment
	get(t, objs, "Deployment/oomwatch-gateway/oomwatch-gateway", &d)
	pods := labels.Set(d.Spec.Template.Labels)
	require.NotNil(t, d.Spec.Replicas)
	require.GreaterOrEqual(t, *d.Spec.Replicas, int32(2))

	var pdb policyv1.PodDisruptionBudget
	get(t, objs, "PodDisruptionBudget/oomwatch-gateway/oomwatch-gateway", &pdb)
	selector, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	require.NoError(t, err)
	assert.True(t, selector.Matches(pods), "the budget covers the gateway's pods")
	require.NotNil(t, pdb.Spec.MaxUnavailable)
	assert.Equal(t, 1, pdb.Spec.MaxUnavailable.IntValue())
	assert.Less(t, pdb.Spec.MaxUnavailable.IntValue(), int(*d.Spec.Replicas), "a drain never takes every replica")

	keys := map[string]corev1.UnsatisfiableConstraintAction{}
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		s, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		require.NoError(t, err)
		assert.True(t, s.Matches(pods), c.TopologyKey)
		assert.Equal(t, int32(1), c.MaxSkew, c.TopologyKey)
		keys[c.TopologyKey] = c.WhenUnsatisfiable
	}
	assert.Equal(t, map[string]corev1.UnsatisfiableConstraintAction{
		"kubernetes.io/hostname":      corev1.ScheduleAnyway,
		"topology.kubernetes.io/zone": corev1.ScheduleAnyway,
	}, keys, "spread where there is room; a one-node cluster still runs both")
}
