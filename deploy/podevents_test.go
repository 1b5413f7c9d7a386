// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestPodEventsComponent: components/pod-events turns pod_events on and grants creating Events
// in a role of its own; everything else is the base's.
func TestPodEventsComponent(t *testing.T) {
	t.Parallel()
	base := build(t, Manifests, agentDir)
	objs := buildOverlay(t, "deploy", `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../deploy]
components: [../deploy/components/pod-events]
`)
	pod := podTemplate(t, agentDir, objs)
	c := pod.Spec.Containers[0]
	assert.Equal(t, corev1.EnvVar{Name: "OOMWATCH_POD_EVENTS", Value: "true"}, env(c)["OOMWATCH_POD_EVENTS"])
	want := podTemplate(t, agentDir, base)
	assert.ElementsMatch(t, append(want.Spec.Containers[0].Env, env(c)["OOMWATCH_POD_EVENTS"]), c.Env)
	want.Spec.Containers[0].Env = c.Env
	assert.Equal(t, want, pod)

	// The base's configuration reads the variable, off by default.
	assert.Equal(t, "${env:OOMWATCH_POD_EVENTS:-false}", at(collectorConfig(t, base), "receivers", "k8s_container", "pod_events"))

	var role rbacv1.ClusterRole
	get(t, objs, "ClusterRole//oomwatch-agent-pod-events", &role)
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}}}, role.Rules)
	var binding rbacv1.ClusterRoleBinding
	get(t, objs, "ClusterRoleBinding//oomwatch-agent-pod-events", &binding)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "oomwatch"}}, binding.Subjects)

	assertOnlyDaemonSetAndRoleChanged(t, base, objs, role.Name)
}
