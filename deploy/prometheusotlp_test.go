// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func withPrometheusOTLP(t *testing.T) []object {
	t.Helper()
	return buildOverlay(t, "deploy", `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../deploy/gateway]
components: [../deploy/gateway/components/prometheus-otlp]
`)
}

// TestPrometheusOTLPComponent: the component adds its configuration to the gateway's ConfigMap,
// has the collector read it after config.yaml, and swaps the remote-write URL for the OTLP one;
// everything else is the base's.
func TestPrometheusOTLPComponent(t *testing.T) {
	t.Parallel()
	base := build(t, Manifests, gatewayDir)
	objs := withPrometheusOTLP(t)

	cm := configMap(t, objs)
	baseCM := configMap(t, base)
	assert.Equal(t, baseCM.Data["config.yaml"], cm.Data["config.yaml"], "config.yaml unchanged")
	want, err := os.ReadFile(filepath.Join("gateway", "components", "prometheus-otlp", "prometheus-otlp.yaml"))
	require.NoError(t, err)
	assert.Equal(t, string(want), cm.Data["prometheus-otlp.yaml"])
	assert.Len(t, cm.Data, 2)
	assert.NotEqual(t, baseCM.Name, cm.Name, "a new name, so the Deployment rolls")

	pod := podTemplate(t, gatewayDir, objs)
	c := pod.Spec.Containers[0]
	assert.Equal(t, []string{"--config=/etc/otelcol-oomwatch/prometheus-otlp.yaml"}, c.Args)
	assert.Equal(t, "/etc/otelcol-oomwatch", mountPath(t, c, "config"))
	e := env(c)
	assert.NotContains(t, e, "PROMETHEUS_REMOTE_WRITE_URL")
	assert.Equal(t, "http://prometheus.monitoring.svc:9090/api/v1/otlp/v1/metrics", e["PROMETHEUS_OTLP_URL"].Value)
	assert.Equal(t, cm.Name, volume(t, pod.Spec, "config").Projected.Sources[0].ConfigMap.Name)

	// The configuration reads the variable the Deployment sets, and sends the metrics there only.
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["prometheus-otlp.yaml"]), &cfg))
	assert.Equal(t, "${env:PROMETHEUS_OTLP_URL}", at(cfg, "exporters", "otlp_http/prometheus", "metrics_endpoint"))
	assert.Equal(t, []any{"otlp_http/prometheus"}, at(cfg, "service", "pipelines", "metrics", "exporters"))

	wantPod := podTemplate(t, gatewayDir, base)
	wc := &wantPod.Spec.Containers[0]
	var rest []corev1.EnvVar
	for _, v := range wc.Env {
		if v.Name != "PROMETHEUS_REMOTE_WRITE_URL" {
			rest = append(rest, v)
		}
	}
	assert.ElementsMatch(t, append(rest, e["PROMETHEUS_OTLP_URL"]), c.Env)
	wc.Env, wc.Args = c.Env, c.Args
	wantPod.Spec.Volumes[0].Projected.Sources[0].ConfigMap.Name = cm.Name
	assert.Equal(t, wantPod, pod)
}

// TestPrometheusOTLPPromotesWhatTheRulesGroupBy: Prometheus 3 keeps a resource attribute as a
// label only if it is promoted. otlp.yaml promotes every k8s.* resource attribute the receiver
// sets, as the remote-write exporter's k8s.* does, and so every k8s_* label that the rules and
// the dashboard read.
func TestPrometheusOTLPPromotesWhatTheRulesGroupBy(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("prometheus", "otlp.yaml"))
	require.NoError(t, err)
	var cfg struct {
		OTLP struct {
			TranslationStrategy string   `json:"translation_strategy"`
			Promote             []string `json:"promote_resource_attributes"`
		} `json:"otlp"`
	}
	require.NoError(t, yaml.UnmarshalStrict(b, &cfg))
	assert.Equal(t, "UnderscoreEscapingWithSuffixes", cfg.OTLP.TranslationStrategy, "the names the rules use")

	// The receiver's resource attributes, from its metadata.yaml.
	b, err = os.ReadFile(filepath.Join("..", "receiver", "k8scontainerreceiver", "metadata.yaml"))
	require.NoError(t, err)
	var md struct {
		ResourceAttributes map[string]any `json:"resource_attributes"`
	}
	require.NoError(t, yaml.Unmarshal(b, &md))
	var k8s []string
	for name := range md.ResourceAttributes {
		if strings.HasPrefix(name, "k8s.") {
			k8s = append(k8s, name)
		}
	}
	require.NotEmpty(t, k8s)
	assert.ElementsMatch(t, k8s, cfg.OTLP.Promote)

	labels := map[string]bool{}
	for _, p := range cfg.OTLP.Promote {
		labels[strings.ReplaceAll(p, ".", "_")] = true
	}
	// Every label the rules and the dashboard name is a k8s.*.name attribute.
	for _, file := range []string{filepath.Join("prometheus", "rules.yaml"), filepath.Join("grafana", "oomwatch.json")} {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		names := slices.Compact(slices.Sorted(slices.Values(regexp.MustCompile(`\bk8s_[a-z]+_name\b`).FindAllString(string(b), -1))))
		require.NotEmpty(t, names, file)
		for _, name := range names {
			assert.True(t, labels[name], "%s: label %s is not promoted", file, name)
		}
	}
}
