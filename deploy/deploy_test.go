package deploy

import (
	"bufio"
	"bytes"
	"io"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// objects returns every document of every manifest, keyed by kind/name.
func objects(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	require.NoError(t, fs.WalkDir(Manifests, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "kustomization.yaml" {
			return err
		}
		b, err := Manifests.ReadFile(path)
		require.NoError(t, err)
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if err == io.EOF {
				return nil
			}
			require.NoError(t, err)
			var meta struct {
				Kind     string
				Metadata struct{ Name string }
			}
			require.NoError(t, yaml.Unmarshal(doc, &meta), path)
			if meta.Kind == "" {
				continue
			}
			key := meta.Kind + "/" + meta.Metadata.Name
			require.NotContains(t, out, key, "%s defined twice", key)
			out[key] = doc
		}
	}))
	return out
}

func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	var role rbacv1.ClusterRole
	require.NoError(t, yaml.UnmarshalStrict(objects(t)["ClusterRole/oomwatch-agent"], &role))
	got := map[string][]string{}
	for _, r := range role.Rules {
		assert.Equal(t, []string{""}, r.APIGroups)
		assert.Empty(t, r.ResourceNames)
		for _, res := range r.Resources {
			got[res] = append(got[res], r.Verbs...)
		}
	}
	assert.Equal(t, map[string][]string{
		"pods":          {"list", "watch"},
		"nodes":         {"get"},
		"nodes/stats":   {"get"},
		"nodes/metrics": {"get"},
	}, got)

	// Events only where the kubelet records those about nodes.
	var events rbacv1.Role
	require.NoError(t, yaml.UnmarshalStrict(objects(t)["Role/oomwatch-agent-node-events"], &events))
	assert.Equal(t, "default", events.Namespace)
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list", "watch"}}}, events.Rules)
	var binding rbacv1.RoleBinding
	require.NoError(t, yaml.UnmarshalStrict(objects(t)["RoleBinding/oomwatch-agent-node-events"], &binding))
	assert.Equal(t, "default", binding.Namespace)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "oomwatch"}}, binding.Subjects)
}

func TestDaemonSetPassesNodeName(t *testing.T) {
	objs := objects(t)
	var ds appsv1.DaemonSet
	require.NoError(t, yaml.UnmarshalStrict(objs["DaemonSet/oomwatch-agent"], &ds))
	assert.Equal(t, "oomwatch-agent", ds.Spec.Template.Spec.ServiceAccountName)
	var found bool
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "K8S_NODE_NAME" {
			found = true
			require.NotNil(t, e.ValueFrom)
			assert.Equal(t, "spec.nodeName", e.ValueFrom.FieldRef.FieldPath)
		}
	}
	assert.True(t, found, "K8S_NODE_NAME not set")

	var binding rbacv1.ClusterRoleBinding
	require.NoError(t, yaml.UnmarshalStrict(objs["ClusterRoleBinding/oomwatch-agent"], &binding))
	assert.Equal(t, "oomwatch-agent", binding.RoleRef.Name)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "oomwatch"}}, binding.Subjects)
}

func TestAgentConfigWatchesItsNode(t *testing.T) {
	var cm struct {
		Data map[string]string
	}
	require.NoError(t, yaml.Unmarshal(objects(t)["ConfigMap/oomwatch-agent"], &cm))
	var cfg struct {
		Receivers map[string]map[string]any
		Service   struct {
			Pipelines map[string]struct{ Receivers, Processors, Exporters []string }
		}
	}
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg))
	assert.Equal(t, "${env:K8S_NODE_NAME}", cfg.Receivers["k8s_container"]["node"])
	p := cfg.Service.Pipelines["metrics"]
	assert.Equal(t, []string{"k8s_container"}, p.Receivers)
	assert.Contains(t, p.Processors, "oom_counter")
	assert.Contains(t, p.Processors, "batch")
	assert.Equal(t, []string{"otlp_grpc"}, p.Exporters)
	l := cfg.Service.Pipelines["logs"]
	assert.Equal(t, []string{"k8s_container"}, l.Receivers, "one record per OOM kill")
	assert.Equal(t, []string{"otlp_grpc"}, l.Exporters)
}
