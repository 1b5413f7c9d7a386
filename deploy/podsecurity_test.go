// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// violation is one failed Pod Security check: its reason and detail, as the API server words them.
type violation struct{ reason, detail string }

// evaluate runs the pod template through the checks of the level, latest version, with the code
// of the API server's PodSecurity admission plugin.
func evaluate(t *testing.T, level api.Level, pod corev1.PodTemplateSpec) []violation {
	t.Helper()
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	require.NoError(t, err)
	var out []violation
	for _, r := range evaluator.EvaluatePod(api.LevelVersion{Level: level, Version: api.LatestVersion()}, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			out = append(out, violation{r.ForbiddenReason, r.ForbiddenDetail})
		}
	}
	return out
}

// hostPaths is the agent's one violation of baseline: its state on the node and the node's
// cgroups (read-only).
var hostPaths = violation{"hostPath volumes", `volumes "state", "cgroup"`}

// hostPathsRestricted is how restricted words it.
var hostPathsRestricted = violation{"restricted volume types", `volumes "state", "cgroup" use restricted volume type "hostPath"`}

// TestPodSecurityLevels: the gateway meets restricted. The agent needs hostPath volumes for its
// state and the kernel's counters, which only privileged admits; besides them, it meets
// baseline, and its collector container meets restricted too: what restricted refuses beyond the
// volumes is the init container, which must be root with CAP_CHOWN to hand the directory over.
// With components/kubelet-source only the state's volume is left.
func TestPodSecurityLevels(t *testing.T) {
	t.Parallel()
	gateway := podTemplate(t, gatewayDir, build(t, Manifests, gatewayDir))
	assert.Empty(t, evaluate(t, api.LevelRestricted, gateway), "gateway: restricted")

	agent := podTemplate(t, agentDir, build(t, Manifests, agentDir))
	assert.Equal(t, []violation{hostPaths}, evaluate(t, api.LevelBaseline, agent), "agent: baseline")
	assert.ElementsMatch(t, []violation{
		hostPathsRestricted,
		{"runAsNonRoot != true", `container "state-dir" must not set securityContext.runAsNonRoot=false`},
		{"runAsUser=0", `container "state-dir" must not set runAsUser=0`},
		{"unrestricted capabilities", `container "state-dir" must not include "CHOWN" in securityContext.capabilities.add`},
	}, evaluate(t, api.LevelRestricted, agent), "agent: restricted")

	collectorOnly := *agent.DeepCopy()
	collectorOnly.Spec.InitContainers = nil
	assert.Equal(t, []violation{hostPathsRestricted}, evaluate(t, api.LevelRestricted, collectorOnly), "agent's collector: restricted")

	kubeletSource := podTemplate(t, agentDir, withKubeletSource(t))
	assert.Equal(t, []violation{{"hostPath volumes", `volume "state"`}}, evaluate(t, api.LevelBaseline, kubeletSource), "agent with the kubelet source: baseline")
}

// apiServerDefaults is the policy of a namespace without labels when the API server is not
// configured otherwise: privileged, latest.
var apiServerDefaults = api.Policy{
	Enforce: api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
	Audit:   api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
	Warn:    api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
}

// TestNamespacesEnforceWhatTheirPodsMeet: each namespace enforces the strictest level its pods
// meet, read from its labels as the API server reads them, and warns at a level where the only
// expected warning is the agent's hostPath volumes, so any other is a regression.
func TestNamespacesEnforceWhatTheirPodsMeet(t *testing.T) {
	t.Parallel()
	for dir, want := range map[string]struct {
		enforce, warn api.Level
		warning       []violation
	}{
		agentDir:   {api.LevelPrivileged, api.LevelBaseline, []violation{hostPaths}},
		gatewayDir: {api.LevelRestricted, api.LevelRestricted, nil},
	} {
		objs := build(t, Manifests, dir)
		var ns corev1.Namespace
		get(t, objs, objs[0].key(), &ns)
		p, errs := api.PolicyToEvaluate(ns.Labels, apiServerDefaults)
		require.Empty(t, errs, dir)
		assert.Equal(t, want.enforce, p.Enforce.Level, "%s: enforce", dir)
		assert.True(t, p.Enforce.Latest(), dir)
		assert.Equal(t, want.warn, p.Warn.Level, "%s: warn", dir)
		assert.Equal(t, want.warn, p.Audit.Level, "%s: audit", dir)

		pod := podTemplate(t, dir, objs)
		assert.Empty(t, evaluate(t, p.Enforce.Level, pod), "%s: admitted", dir)
		assert.Equal(t, want.warning, evaluate(t, p.Warn.Level, pod), "%s: warnings", dir)
	}
}
