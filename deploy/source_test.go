// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// withKubeletSource is the agent with components/kubelet-source, from an overlay as a user keeps
// it beside deploy/.
func withKubeletSource(t *testing.T) []object {
	t.Helper()
	return buildOverlay(t, "deploy", `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../deploy]
components: [../deploy/components/kubelet-source]
`)
}

// TestAgentReadsTheKernelsCountsReadOnly: as shipped, process OOM kills come from the kernel's
// counters under the node's /sys/fs/cgroup, mounted read-only where config.yaml looks for it.
func TestAgentReadsTheKernelsCountsReadOnly(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, agentDir)
	cfg := collectorConfig(t, objs)
	pod := podTemplate(t, agentDir, objs).Spec

	cgroup := volume(t, pod, "cgroup")
	require.NotNil(t, cgroup.HostPath)
	assert.Equal(t, "/sys/fs/cgroup", cgroup.HostPath.Path)
	require.NotNil(t, cgroup.HostPath.Type)
	assert.Equal(t, corev1.HostPathDirectory, *cgroup.HostPath.Type)

	c := pod.Containers[0]
	var mount corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if m.Name == "cgroup" {
			mount = m
		}
	}
	assert.True(t, mount.ReadOnly, "the cgroup mount is read-only")
	require.NotNil(t, mount.RecursiveReadOnly)
	assert.Equal(t, corev1.RecursiveReadOnlyIfPossible, *mount.RecursiveReadOnly, "and so are the controllers mounted below it, where the runtime can")
	assert.Nil(t, mount.MountPropagation)
	for _, init := range pod.InitContainers {
		for _, m := range init.VolumeMounts {
			assert.NotEqual(t, "cgroup", m.Name, "%s: only the collector reads the cgroups", init.Name)
		}
	}

	assert.Equal(t, "${env:OOMWATCH_PROCESS_OOM_KILLS_SOURCE:-cgroup}", at(cfg, "receivers", "k8s_container", "process_oom_kills", "source"))
	assert.Equal(t, "${env:OOMWATCH_CGROUP_ROOT:-"+mount.MountPath+"}", at(cfg, "receivers", "k8s_container", "process_oom_kills", "cgroup_root"))
	assert.NotContains(t, env(c), "OOMWATCH_PROCESS_OOM_KILLS_SOURCE", "the default: cgroup")
	assert.NotContains(t, env(c), "OOMWATCH_CGROUP_ROOT", "the default: the mount")
}

// TestKubeletSourceComponent: components/kubelet-source switches the agent to the kubelet's
// /metrics/cadvisor: it sets the source, empties the cgroup root (the receiver refuses one with
// the kubelet source), removes the mount and its volume and grants nodes/metrics in a role of
// its own. Nothing else of the base changes.
func TestKubeletSourceComponent(t *testing.T) {
	t.Parallel()
	base := build(t, Manifests, agentDir)
	objs := withKubeletSource(t)

	pod := podTemplate(t, agentDir, objs)
	c := pod.Spec.Containers[0]
	e := env(c)
	assert.Equal(t, corev1.EnvVar{Name: "OOMWATCH_PROCESS_OOM_KILLS_SOURCE", Value: "kubelet"}, e["OOMWATCH_PROCESS_OOM_KILLS_SOURCE"])
	cgroupRoot, ok := e["OOMWATCH_CGROUP_ROOT"]
	require.True(t, ok, "OOMWATCH_CGROUP_ROOT set, to nothing")
	assert.Equal(t, corev1.EnvVar{Name: "OOMWATCH_CGROUP_ROOT"}, cgroupRoot)
	for _, m := range c.VolumeMounts {
		assert.NotEqual(t, "cgroup", m.Name)
	}
	for _, v := range pod.Spec.Volumes {
		assert.NotEqual(t, "cgroup", v.Name)
	}

	// The rest of the pod template is the base's.
	want := podTemplate(t, agentDir, base)
	wc := &want.Spec.Containers[0]
	assert.ElementsMatch(t, append(wc.Env, e["OOMWATCH_PROCESS_OOM_KILLS_SOURCE"], cgroupRoot), c.Env)
	wc.Env = c.Env
	var mounts []corev1.VolumeMount
	for _, m := range wc.VolumeMounts {
		if m.Name != "cgroup" {
			mounts = append(mounts, m)
		}
	}
	wc.VolumeMounts = mounts
	var volumes []corev1.Volume
	for _, v := range want.Spec.Volumes {
		if v.Name != "cgroup" {
			volumes = append(volumes, v)
		}
	}
	want.Spec.Volumes = volumes
	assert.Equal(t, want, pod)

	var role rbacv1.ClusterRole
	get(t, objs, "ClusterRole//oomwatch-agent-kubelet-metrics", &role)
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}}}, role.Rules)
	var binding rbacv1.ClusterRoleBinding
	get(t, objs, "ClusterRoleBinding//oomwatch-agent-kubelet-metrics", &binding)
	assert.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name}, binding.RoleRef)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "oomwatch"}}, binding.Subjects)

	// Everything else is the base's, unchanged.
	assertOnlyDaemonSetAndRoleChanged(t, base, objs, role.Name)
	assert.Equal(t, configMap(t, base).Data, configMap(t, objs).Data, "one configuration; the environment picks the source")
}
