// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/utils/ptr"
)

// TestKernelLogComponent: components/kernel-log turns kernel_log on and lets the collector
// container read /dev/kmsg: root and privileged. Nothing else changes, the init container
// included, and the namespace's enforced level still admits the pod.
func TestKernelLogComponent(t *testing.T) {
	t.Parallel()
	base := build(t, Manifests, agentDir)
	objs := buildOverlay(t, "deploy", `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../deploy]
components: [../deploy/components/kernel-log]
`)
	pod := podTemplate(t, agentDir, objs)
	c := pod.Spec.Containers[0]
	require.Equal(t, "otelcol", c.Name)
	assert.Equal(t, corev1.EnvVar{Name: "OOMWATCH_KERNEL_LOG", Value: "true"}, env(c)["OOMWATCH_KERNEL_LOG"])
	sc := c.SecurityContext
	assert.Equal(t, ptr.To(true), sc.Privileged)
	assert.Equal(t, ptr.To(int64(0)), sc.RunAsUser)
	assert.Equal(t, ptr.To(false), sc.RunAsNonRoot)
	assert.Equal(t, ptr.To(true), sc.AllowPrivilegeEscalation, "the API server refuses privileged without it")

	want := podTemplate(t, agentDir, base)
	assert.ElementsMatch(t, append(want.Spec.Containers[0].Env, env(c)["OOMWATCH_KERNEL_LOG"]), c.Env)
	want.Spec.Containers[0].Env = c.Env
	want.Spec.Containers[0].SecurityContext = sc
	assert.Equal(t, want, pod)

	// The base's configuration reads the variable, off by default.
	assert.Equal(t, "${env:OOMWATCH_KERNEL_LOG:-false}", at(collectorConfig(t, base), "receivers", "k8s_container", "kernel_log", "enabled"))

	assert.Empty(t, evaluate(t, api.LevelPrivileged, pod), "the namespace enforces privileged")
	assert.Contains(t, evaluate(t, api.LevelBaseline, pod), violation{"privileged", `container "otelcol" must not set securityContext.privileged=true`},
		"the namespace warns at baseline")
	assertOnlyDaemonSetAndRoleChanged(t, base, objs, "")
}
