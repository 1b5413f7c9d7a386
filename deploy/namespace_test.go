// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
)

// readmeOverlay is the kustomization of README.md's section "Your own namespace".
func readmeOverlay(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "## Your own namespace\n")
	require.True(t, ok, "README.md: no section Your own namespace")
	_, block, ok := strings.Cut(section, "```yaml\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```\n")
	require.True(t, ok)
	return block
}

// TestNamespaceOverlayKeepsTheEventsRBACInDefault: the overlay README.md gives for moving the
// agent to a namespace of its own moves everything of the agent there, the bindings' subjects
// with it, and leaves the Role and RoleBinding for SystemOOM events in default, where the events
// are. Without its replacements, they would move too.
func TestNamespaceOverlayKeepsTheEventsRBACInDefault(t *testing.T) {
	t.Parallel()
	overlay := readmeOverlay(t)
	require.Contains(t, overlay, "  - ../oomwatch/deploy\n")
	// The overlay as a user keeps it, beside their copy of deploy/.
	withoutReplacements, _, _ := strings.Cut(overlay, "# The Role and RoleBinding")
	namespaces := func(objs []object) map[string]string {
		out := map[string]string{}
		for _, o := range objs {
			out[o.Kind+"/"+o.Metadata.Name] = o.Metadata.Namespace
		}
		return out
	}
	objs := buildOverlay(t, "oomwatch/deploy", overlay)
	got := namespaces(objs)
	assert.Equal(t, "default", got["Role/oomwatch-agent-node-events"])
	assert.Equal(t, "default", got["RoleBinding/oomwatch-agent-node-events"])
	assert.Equal(t, "monitoring", got["ServiceAccount/oomwatch-agent"])
	assert.Equal(t, "monitoring", got["DaemonSet/oomwatch-agent"])
	var binding rbacv1.RoleBinding
	get(t, objs, "RoleBinding/default/oomwatch-agent-node-events", &binding)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "monitoring"}}, binding.Subjects)
	var cluster rbacv1.ClusterRoleBinding
	get(t, objs, "ClusterRoleBinding//oomwatch-agent", &cluster)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "monitoring"}}, cluster.Subjects)

	// The pitfall the replacements mend.
	moved := namespaces(buildOverlay(t, "oomwatch/deploy", withoutReplacements))
	assert.Equal(t, "monitoring", moved["Role/oomwatch-agent-node-events"])
}
