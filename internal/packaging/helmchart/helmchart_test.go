// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package helmchart

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"sigs.k8s.io/yaml"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/packaging/kustomize"
)

func chart(t *testing.T) *chartv2.Chart {
	t.Helper()
	ch, err := Load(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	return ch
}

// kustomizeHash is the content hash kustomize appends to a generated ConfigMap's name.
var kustomizeHash = regexp.MustCompile(`^(oomwatch-(agent|gateway))-[a-z0-9]{10}$`)

// objects decodes a manifest into its objects by kind/namespace/name, in substance: without
// labels and annotations (the chart adds its own; a hash of the configuration rolls the pods in
// one, the ConfigMap's name in the other), ConfigMap names without kustomize's hash, image pull
// policies (the chart states the default), and each collector configuration (a ConfigMap's
// *.yaml) as the tree it parses to.
func objects(t *testing.T, manifest string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range Documents(manifest) {
		var o map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(doc), &o))
		if o == nil {
			continue
		}
		meta := o["metadata"].(map[string]any)
		kind := o["kind"].(string)
		if kind == "Namespace" {
			labels := map[string]any{}
			for k, v := range meta["labels"].(map[string]any) {
				if strings.HasPrefix(k, "pod-security.kubernetes.io/") {
					labels[k] = v
				}
			}
			meta["labels"] = labels
		} else {
			delete(meta, "labels")
		}
		delete(meta, "annotations")
		if m := kustomizeHash.FindStringSubmatch(fmt.Sprint(meta["name"])); m != nil {
			meta["name"] = m[1]
		}
		normalize(t, o)
		ns, _ := meta["namespace"].(string)
		out[kind+"/"+ns+"/"+meta["name"].(string)] = o
	}
	return out
}

// normalize walks an object: pod template annotations, image pull policies and ConfigMap name
// hashes go, each *.yaml of a ConfigMap becomes a tree.
func normalize(t *testing.T, v any) {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "imagePullPolicy")
		if md, ok := x["metadata"].(map[string]any); ok && x["spec"] != nil && x["kind"] == nil {
			delete(md, "annotations") // a pod template's
		}
		if name, ok := x["name"].(string); ok {
			if m := kustomizeHash.FindStringSubmatch(name); m != nil {
				x["name"] = m[1]
			}
		}
		if data, ok := x["data"].(map[string]any); ok {
			for key, v := range data {
				if cfg, ok := v.(string); ok && strings.HasSuffix(key, ".yaml") {
					var tree any
					require.NoError(t, yaml.Unmarshal([]byte(cfg), &tree))
					data[key] = tree
				}
			}
		}
		for _, e := range x {
			normalize(t, e)
		}
	case []any:
		for _, e := range x {
			normalize(t, e)
		}
	}
}

// kustomizeBuild is deploy/'s agent tier (with components) and gateway tier, as a user applies
// them.
func kustomizeBuild(t *testing.T, components, gatewayComponents []string) string {
	t.Helper()
	build := func(base string, components []string) string {
		overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [" + base + "]\n"
		if len(components) > 0 {
			overlay += "components: [" + strings.Join(components, ", ") + "]\n"
		}
		out, err := kustomize.BuildOverlay(deploy.Manifests, "deploy", overlay)
		require.NoError(t, err)
		return string(out)
	}
	return build("../deploy", components) + "\n---\n" + build("../deploy/gateway", gatewayComponents)
}

// TestChartIsTheKustomizeBase: with its defaults, released into the namespace oomwatch, the
// chart installs in substance what deploy/ does (the namespace oomwatch apart, which
// `helm install --create-namespace` makes); with processOOMKillsSource kubelet, what deploy/
// with components/kubelet-source does; with prometheusOTLPURL, what deploy/gateway with
// components/prometheus-otlp does.
func TestChartIsTheKustomizeBase(t *testing.T) {
	ch := chart(t)
	for name, c := range map[string]struct {
		values            map[string]any
		components        []string
		gatewayComponents []string
	}{
		"defaults":       {nil, nil, nil},
		"kubelet source": {map[string]any{"agent": map[string]any{"processOOMKillsSource": "kubelet"}}, []string{"../deploy/components/kubelet-source"}, nil},
		"pod events":     {map[string]any{"agent": map[string]any{"podEvents": true}}, []string{"../deploy/components/pod-events"}, nil},
		"kernel log":     {map[string]any{"agent": map[string]any{"kernelLog": true}}, []string{"../deploy/components/kernel-log"}, nil},
		"Prometheus 3 over OTLP": {
			map[string]any{"gateway": map[string]any{"prometheusOTLPURL": "http://prometheus.monitoring.svc:9090/api/v1/otlp/v1/metrics"}},
			nil, []string{"../deploy/gateway/components/prometheus-otlp"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			manifest, err := Render(ch, "oomwatch", "oomwatch", c.values)
			require.NoError(t, err)
			got := objects(t, manifest)
			want := objects(t, kustomizeBuild(t, c.components, c.gatewayComponents))
			delete(want, "Namespace//oomwatch")
			assert.ElementsMatch(t, keys(want), keys(got))
			for k, w := range want {
				if g, ok := got[k]; ok {
					assert.Equal(t, w, g, k)
				}
			}
		})
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestChartValuesAreChecked: values.schema.json refuses what the chart cannot install, naming
// the value.
func TestChartValuesAreChecked(t *testing.T) {
	ch := chart(t)
	for _, c := range []struct {
		values map[string]any
		names  string
	}{
		{map[string]any{"agent": map[string]any{"processOOMKillsSource": "cadvisor"}}, "processOOMKillsSource"},
		{map[string]any{"gateway": map[string]any{"replicas": 0}}, "replicas"},
		{map[string]any{"gateway": map[string]any{"prometheusOTLPURL": "prometheus:9090"}}, "prometheusOTLPURL"},
		{map[string]any{"agnet": map[string]any{}}, "agnet"},
	} {
		_, err := Render(ch, "oomwatch", "oomwatch", c.values)
		require.Error(t, err, "%v", c.values)
		assert.Contains(t, err.Error(), c.names)
	}
}
