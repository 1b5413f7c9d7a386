// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/oomwatch/oomwatch/internal/packaging/kustomize"
)

// The two kustomizations a user applies, each with its own namespace.
const (
	agentDir   = "."
	gatewayDir = "gateway"
)

// object is one document of a kustomize build.
type object struct {
	Kind     string
	Metadata struct {
		Name, Namespace string
	}
	raw []byte
}

// key is kind/namespace/name, with the content hash of a generated name as <hash>.
func (o object) key() string {
	name := o.Metadata.Name
	if o.Kind == "ConfigMap" {
		name = generatedSuffix.ReplaceAllString(name, "-<hash>")
	}
	return o.Kind + "/" + o.Metadata.Namespace + "/" + name
}

var generatedSuffix = regexp.MustCompile(`-[a-z0-9]{10}$`)

// build returns the objects of `kubectl apply -k dir`, in the order they are applied.
func build(t *testing.T, fsys fs.FS, dir string) []object {
	t.Helper()
	manifest, err := kustomize.BuildFS(fsys, dir)
	require.NoError(t, err)
	return parse(t, manifest)
}

// buildOverlay returns the objects of an overlay with the given kustomization.yaml, kept beside
// this folder put at basePath (kustomize.BuildOverlay).
func buildOverlay(t *testing.T, basePath, kustomization string) []object {
	t.Helper()
	manifest, err := kustomize.BuildOverlay(Manifests, basePath, kustomization)
	require.NoError(t, err)
	return parse(t, manifest)
}

// parse splits a kustomize build into its objects.
func parse(t *testing.T, manifest []byte) []object {
	t.Helper()
	var out []object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		o := object{raw: doc}
		require.NoError(t, yaml.Unmarshal(doc, &o))
		out = append(out, o)
	}
}

// get decodes the object with the given key into into, strictly.
func get(t *testing.T, objs []object, key string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.key() == key {
			require.NoError(t, yaml.UnmarshalStrict(o.raw, into), key)
			return
		}
	}
	require.Failf(t, "missing object", "%s", key)
}

func TestBuildsTheExpectedObjects(t *testing.T) {
	t.Parallel()
	for dir, want := range map[string][]string{
		agentDir: {
			"Namespace//oomwatch",
			"ServiceAccount/oomwatch/oomwatch-agent",
			"ClusterRole//oomwatch-agent",
			"ClusterRoleBinding//oomwatch-agent",
			"Role/default/oomwatch-agent-node-events",
			"RoleBinding/default/oomwatch-agent-node-events",
			"PriorityClass//oomwatch-agent",
			"ConfigMap/oomwatch/oomwatch-agent-<hash>",
			"DaemonSet/oomwatch/oomwatch-agent",
		},
		gatewayDir: {
			"Namespace//oomwatch-gateway",
			"ConfigMap/oomwatch-gateway/oomwatch-gateway-<hash>",
			"Deployment/oomwatch-gateway/oomwatch-gateway",
			"Service/oomwatch-gateway/oomwatch-gateway",
			"PodDisruptionBudget/oomwatch-gateway/oomwatch-gateway",
		},
	} {
		objs := build(t, Manifests, dir)
		var got []string
		for _, o := range objs {
			got = append(got, o.key())
		}
		assert.ElementsMatch(t, want, got, dir)
		assert.Equal(t, "Namespace", objs[0].Kind, "%s: the namespace is applied before what it holds", dir)
	}
}

// assertOnlyDaemonSetAndRoleChanged: a component's build objs is the base's but for the
// DaemonSet and the role (and its binding) named role that the component adds.
func assertOnlyDaemonSetAndRoleChanged(t *testing.T, base, objs []object, role string) {
	t.Helper()
	var got, unchanged []string
	for _, o := range objs {
		if o.Kind != "DaemonSet" && o.Metadata.Name != role {
			got = append(got, o.key()+"\n"+string(o.raw))
		}
	}
	for _, o := range base {
		if o.Kind != "DaemonSet" {
			unchanged = append(unchanged, o.key()+"\n"+string(o.raw))
		}
	}
	assert.ElementsMatch(t, unchanged, got)
}

// configMap is the one, generated, ConfigMap of objs.
func configMap(t *testing.T, objs []object) corev1.ConfigMap {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.Kind == "ConfigMap" {
			found = append(found, o)
		}
	}
	require.Len(t, found, 1)
	var cm corev1.ConfigMap
	require.NoError(t, yaml.UnmarshalStrict(found[0].raw, &cm))
	return cm
}

// podTemplate is the pod template of the agent's DaemonSet or the gateway's Deployment.
func podTemplate(t *testing.T, dir string, objs []object) corev1.PodTemplateSpec {
	t.Helper()
	if dir == agentDir {
		var ds appsv1.DaemonSet
		get(t, objs, "DaemonSet/oomwatch/oomwatch-agent", &ds)
		return ds.Spec.Template
	}
	var d appsv1.Deployment
	get(t, objs, "Deployment/oomwatch-gateway/oomwatch-gateway", &d)
	return d.Spec.Template
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	require.Failf(t, "missing volume", "%s", name)
	return corev1.Volume{}
}

// TestConfigChangeRollsTheWorkload: the ConfigMap's name carries a hash of config.yaml and the
// workload refers to that name, so changing the configuration changes the pod template, which
// rolls the DaemonSet or the Deployment.
func TestConfigChangeRollsTheWorkload(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{agentDir, gatewayDir} {
		changed := fstest.MapFS{}
		require.NoError(t, fs.WalkDir(Manifests, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := Manifests.ReadFile(path)
			if path == strings.TrimPrefix(dir+"/config.yaml", "./") {
				b = append(b, "# changed\n"...)
			}
			changed[path] = &fstest.MapFile{Data: b}
			return err
		}))
		var names []string
		for _, fsys := range []fs.FS{Manifests, changed} {
			objs := build(t, fsys, dir)
			name := configMap(t, objs).Name
			names = append(names, name)
			projected := volume(t, podTemplate(t, dir, objs).Spec, "config").Projected
			require.NotNil(t, projected, dir)
			assert.Equal(t, name, projected.Sources[0].ConfigMap.Name, "%s: the workload mounts the generated ConfigMap", dir)
		}
		assert.NotEqual(t, names[0], names[1], "%s: a new configuration, a new name", dir)
	}
}

func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, agentDir)
	var role rbacv1.ClusterRole
	get(t, objs, "ClusterRole//oomwatch-agent", &role)
	got := map[string][]string{}
	for _, r := range role.Rules {
		assert.Equal(t, []string{""}, r.APIGroups)
		assert.Empty(t, r.ResourceNames)
		for _, res := range r.Resources {
			got[res] = append(got[res], r.Verbs...)
		}
	}
	assert.Equal(t, map[string][]string{
		"pods":        {"list", "watch"},
		"nodes":       {"get"},
		"nodes/stats": {"get"},
	}, got, "no nodes/metrics: process kills come from the cgroups")

	// Events only where the kubelet records those about nodes.
	var events rbacv1.Role
	get(t, objs, "Role/default/oomwatch-agent-node-events", &events)
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list", "watch"}}}, events.Rules)
	var binding rbacv1.RoleBinding
	get(t, objs, "RoleBinding/default/oomwatch-agent-node-events", &binding)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "oomwatch"}}, binding.Subjects)
}

func env(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

func TestDaemonSetPassesNodeName(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, agentDir)
	pod := podTemplate(t, agentDir, objs)
	assert.Equal(t, "oomwatch-agent", pod.Spec.ServiceAccountName)
	nodeName, ok := env(pod.Spec.Containers[0])["K8S_NODE_NAME"]
	require.True(t, ok, "K8S_NODE_NAME not set")
	require.NotNil(t, nodeName.ValueFrom)
	assert.Equal(t, "spec.nodeName", nodeName.ValueFrom.FieldRef.FieldPath)

	var binding rbacv1.ClusterRoleBinding
	get(t, objs, "ClusterRoleBinding//oomwatch-agent", &binding)
	assert.Equal(t, "oomwatch-agent", binding.RoleRef.Name)
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "oomwatch-agent", Namespace: "oomwatch"}}, binding.Subjects)
}

// collectorConfig is config.yaml of the generated ConfigMap, as a tree.
func collectorConfig(t *testing.T, objs []object) map[string]any {
	t.Helper()
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(configMap(t, objs).Data["config.yaml"]), &cfg))
	return cfg
}

// at is the value at a path of keys in a configuration tree, nil if there is none.
func at(cfg map[string]any, path ...string) any {
	var v any = cfg
	for _, key := range path {
		m, _ := v.(map[string]any)
		v = m[key]
	}
	return v
}

func TestAgentConfigWatchesItsNode(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, agentDir)
	cfg := collectorConfig(t, objs)
	assert.Equal(t, "${env:K8S_NODE_NAME}", at(cfg, "receivers", "k8s_container", "node"))
	// The cluster's name from one setting, the DaemonSet's K8S_CLUSTER_NAME (empty: none).
	assert.Equal(t, "${env:K8S_CLUSTER_NAME:-}", at(cfg, "receivers", "k8s_container", "cluster_name"))
	clusterName, ok := env(podTemplate(t, agentDir, objs).Spec.Containers[0])["K8S_CLUSTER_NAME"]
	require.True(t, ok, "K8S_CLUSTER_NAME in the DaemonSet, for an overlay to set")
	assert.Empty(t, clusterName.Value)
	assert.Equal(t, []any{"k8s_container"}, at(cfg, "service", "pipelines", "metrics", "receivers"))
	assert.Equal(t, []any{"memory_limiter", "oom_counter", "batch"}, at(cfg, "service", "pipelines", "metrics", "processors"))
	assert.Equal(t, []any{"otlp_grpc"}, at(cfg, "service", "pipelines", "metrics", "exporters"))
	assert.Equal(t, []any{"k8s_container"}, at(cfg, "service", "pipelines", "logs", "receivers"), "one record per OOM kill")
	assert.Equal(t, []any{"otlp_grpc"}, at(cfg, "service", "pipelines", "logs", "exporters"))
}

func mountPath(t *testing.T, c corev1.Container, vol string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == vol {
			return m.MountPath
		}
	}
	require.Failf(t, "missing volume mount", "%s in %s", vol, c.Name)
	return ""
}

// TestAgentStateSurvivesRolloutsAndReboots: the receiver and the processor keep their state in
// file_storage, whose directory is a hostPath on the node, handed to the collector's user by the
// init container before the collector starts.
func TestAgentStateSurvivesRolloutsAndReboots(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, agentDir)
	cfg := collectorConfig(t, objs)
	assert.Equal(t, "file_storage", at(cfg, "receivers", "k8s_container", "storage"))
	assert.Equal(t, "file_storage", at(cfg, "processors", "oom_counter", "storage"))
	assert.Contains(t, at(cfg, "service", "extensions"), "file_storage")

	pod := podTemplate(t, agentDir, objs).Spec
	state := volume(t, pod, "state")
	require.NotNil(t, state.HostPath)
	assert.Equal(t, "/var/lib/otelcol-oomwatch", state.HostPath.Path)
	require.NotNil(t, state.HostPath.Type)
	assert.Equal(t, corev1.HostPathDirectoryOrCreate, *state.HostPath.Type)
	dir := mountPath(t, pod.Containers[0], "state")
	assert.Equal(t, "${env:OOMWATCH_STATE_DIR:-"+dir+"}", at(cfg, "extensions", "file_storage", "directory"))

	require.Len(t, pod.InitContainers, 1)
	init := pod.InitContainers[0]
	assert.Equal(t, dir, mountPath(t, init, "state"))
	assert.Equal(t, pod.Containers[0].Image, init.Image, "the init program ships in the collector's image")
	assert.Equal(t, []string{"/oomwatch-statedir", "--dir=" + dir, "--owner=65532:65532"}, init.Command)
	assert.Equal(t, int64(65532), *pod.SecurityContext.RunAsUser)
	assert.Equal(t, int64(65532), *pod.SecurityContext.RunAsGroup)
}

// TestAgentSendsToTheGatewayOverTLS: the agent's exporter takes its endpoint and TLS files from
// the environment, which the DaemonSet sets to the gateway's Service and to the files of its
// Secret; the gateway's receiver likewise.
func TestAgentSendsToTheGatewayOverTLS(t *testing.T) {
	t.Parallel()
	agent := build(t, Manifests, agentDir)
	gateway := build(t, Manifests, gatewayDir)

	cfg := collectorConfig(t, agent)
	assert.Equal(t, map[string]any{
		"insecure":        "${env:OTLP_INSECURE:-false}",
		"ca_file":         "${env:OTLP_CA_FILE:-}",
		"cert_file":       "${env:OTLP_CERT_FILE:-}",
		"key_file":        "${env:OTLP_KEY_FILE:-}",
		"reload_interval": "1h",
	}, at(cfg, "exporters", "otlp_grpc", "tls"))
	assert.Equal(t, "${env:OTLP_ENDPOINT}", at(cfg, "exporters", "otlp_grpc", "endpoint"))

	var svc corev1.Service
	get(t, gateway, "Service/oomwatch-gateway/oomwatch-gateway", &svc)
	agentEnv := env(podTemplate(t, agentDir, agent).Spec.Containers[0])
	assert.Equal(t, svc.Name+"."+svc.Namespace+".svc:4317", agentEnv["OTLP_ENDPOINT"].Value)
	assert.Equal(t, int32(4317), svc.Spec.Ports[0].Port)
	assert.NotContains(t, agentEnv, "OTLP_INSECURE", "TLS unless an overlay turns it off")

	gwCfg := collectorConfig(t, gateway)
	assert.Equal(t, map[string]any{
		"cert_file":             "${env:TLS_CERT_FILE}",
		"key_file":              "${env:TLS_KEY_FILE}",
		"client_ca_file":        "${env:TLS_CLIENT_CA_FILE}",
		"reload_interval":       "1h",
		"client_ca_file_reload": true,
	}, at(gwCfg, "receivers", "otlp", "protocols", "grpc", "tls"))

	for dir, files := range map[string]map[string]string{
		agentDir:   {"OTLP_CA_FILE": "ca.crt", "OTLP_CERT_FILE": "tls.crt", "OTLP_KEY_FILE": "tls.key"},
		gatewayDir: {"TLS_CLIENT_CA_FILE": "ca.crt", "TLS_CERT_FILE": "tls.crt", "TLS_KEY_FILE": "tls.key"},
	} {
		objs := agent
		if dir == gatewayDir {
			objs = gateway
		}
		pod := podTemplate(t, dir, objs).Spec
		c := pod.Containers[0]
		secret := volume(t, pod, "config").Projected.Sources[1].Secret
		require.NotNil(t, secret, dir)
		inVolume := map[string]string{}
		for _, item := range secret.Items {
			inVolume[item.Key] = mountPath(t, c, "config") + "/" + item.Path
		}
		for name, key := range files {
			assert.Equal(t, inVolume[key], env(c)[name].Value, "%s: %s is %s of the Secret %s", dir, name, key, secret.Name)
		}
	}
}

// TestWorkloadsAreHardened: non-root 65532 everywhere but in the agent's init container, the
// runtime's seccomp profile, no privilege escalation, no capability, a read-only root file
// system, and the configuration where the image's entrypoint reads it.
func TestWorkloadsAreHardened(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{agentDir, gatewayDir} {
		pod := podTemplate(t, dir, build(t, Manifests, dir)).Spec
		psc := pod.SecurityContext
		require.NotNil(t, psc, dir)
		assert.True(t, *psc.RunAsNonRoot, dir)
		assert.Equal(t, int64(65532), *psc.RunAsUser, dir)
		assert.Equal(t, int64(65532), *psc.RunAsGroup, dir)
		assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type, dir)

		for _, c := range append(pod.InitContainers, pod.Containers...) {
			sc := c.SecurityContext
			require.NotNil(t, sc, c.Name)
			assert.False(t, *sc.AllowPrivilegeEscalation, c.Name)
			assert.True(t, *sc.ReadOnlyRootFilesystem, c.Name)
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, c.Name)
			assert.Nil(t, sc.Privileged, c.Name)
		}
		require.Len(t, pod.Containers, 1, dir)
		c := pod.Containers[0]
		assert.True(t, *c.SecurityContext.RunAsNonRoot, dir)
		assert.Equal(t, int64(65532), *c.SecurityContext.RunAsUser, dir)
		assert.Equal(t, int64(65532), *c.SecurityContext.RunAsGroup, dir)
		assert.Empty(t, c.SecurityContext.Capabilities.Add, dir)
		assert.Equal(t, "docker.io/oomwatch/otelcol-oomwatch:dev", c.Image, dir)
		assert.Empty(t, c.Command, "%s: the image's entrypoint", dir)
		assert.Empty(t, c.Args, "%s: the image's entrypoint reads /etc/otelcol-oomwatch/config.yaml", dir)
		assert.Equal(t, "/etc/otelcol-oomwatch", mountPath(t, c, "config"), dir)
	}

	// Only the init container runs as root, to chown, with nothing but CAP_CHOWN.
	init := podTemplate(t, agentDir, build(t, Manifests, agentDir)).Spec.InitContainers[0]
	assert.Equal(t, int64(0), *init.SecurityContext.RunAsUser)
	assert.Equal(t, []corev1.Capability{"CHOWN"}, init.SecurityContext.Capabilities.Add)
}
