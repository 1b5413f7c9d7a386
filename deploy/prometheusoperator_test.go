// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "write prometheus-operator/prometheusrule.yaml from prometheus/rules.yaml")

const (
	prometheusRuleFile = "prometheus-operator/prometheusrule.yaml"
	prometheusRuleHead = `# Generated from ../prometheus/rules.yaml (go test ./deploy -run TestPrometheusRuleIsRulesYAML
# -update); do not edit. The same groups, for a Prometheus run by prometheus-operator.
`
)

// rulesAsPrometheusRule is prometheus/rules.yaml as a PrometheusRule, the groups decoded by
// prometheus-operator's own types.
func rulesAsPrometheusRule(t *testing.T) monitoringv1.PrometheusRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("prometheus", "rules.yaml"))
	require.NoError(t, err)
	var spec monitoringv1.PrometheusRuleSpec
	require.NoError(t, yaml.UnmarshalStrict(b, &spec))
	return monitoringv1.PrometheusRule{
		TypeMeta: metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      "oomwatch",
			Namespace: "oomwatch",
			Labels:    map[string]string{"app.kubernetes.io/name": "oomwatch"},
		},
		Spec: spec,
	}
}

// TestPrometheusRuleIsRulesYAML: the shipped PrometheusRule holds exactly the groups of
// prometheus/rules.yaml, which promtool tests, so the two cannot drift apart.
func TestPrometheusRuleIsRulesYAML(t *testing.T) {
	want := rulesAsPrometheusRule(t)
	out, err := yaml.Marshal(want)
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile(prometheusRuleFile, append([]byte(prometheusRuleHead), out...), 0o600))
	}
	b, err := os.ReadFile(prometheusRuleFile)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(b), prometheusRuleHead))
	assert.Equal(t, string(out), strings.TrimPrefix(string(b), prometheusRuleHead),
		"%s is not rules.yaml's groups: go test ./deploy -run TestPrometheusRuleIsRulesYAML -update", prometheusRuleFile)
	var got monitoringv1.PrometheusRule
	require.NoError(t, yaml.UnmarshalStrict(b, &got))
	assert.Equal(t, want, got)
	assert.NotEmpty(t, got.Spec.Groups)
}

// TestPodMonitorsScrapeTheCollectors: each PodMonitor selects the pods of its tier, in its
// namespace, at the port their telemetry is served on.
func TestPodMonitorsScrapeTheCollectors(t *testing.T) {
	t.Parallel()
	objs := build(t, Manifests, "prometheus-operator")
	for dir, key := range map[string]string{
		agentDir:   "PodMonitor/oomwatch/oomwatch-agent",
		gatewayDir: "PodMonitor/oomwatch-gateway/oomwatch-gateway",
	} {
		var pm monitoringv1.PodMonitor
		get(t, objs, key, &pm)
		pod := podTemplate(t, dir, build(t, Manifests, dir))
		assert.Equal(t, pod.Labels, pm.Spec.Selector.MatchLabels, key)
		require.Len(t, pm.Spec.PodMetricsEndpoints, 1)
		require.NotNil(t, pm.Spec.PodMetricsEndpoints[0].Port)
		port := *pm.Spec.PodMetricsEndpoints[0].Port
		var found bool
		for _, p := range pod.Spec.Containers[0].Ports {
			found = found || (p.Name == port && p.ContainerPort == 8888)
		}
		assert.True(t, found, "%s: port %s is the collector's telemetry", key, port)
	}
	var rule monitoringv1.PrometheusRule
	get(t, objs, "PrometheusRule/oomwatch/oomwatch", &rule)
}

// TestNoRuleIsWrittenTwice: two equal recording rules in rules.yaml write one series twice at
// each evaluation, and Prometheus keeps whichever sample it sees first.
func TestNoRuleIsWrittenTwice(t *testing.T) {
	seen := map[string]string{}
	for _, g := range rulesAsPrometheusRule(t).Spec.Groups {
		for _, r := range g.Rules {
			key := r.Record + r.Alert + "\x00" + r.Expr.String()
			if where, ok := seen[key]; ok {
				t.Errorf("%s%s in group %s repeats the one in group %s", r.Record, r.Alert, g.Name, where)
			}
			seen[key] = g.Name
		}
	}
}

// TestRuleTestsEvaluateGroupsInOrder: without group_eval_order promtool evaluates the groups of
// rules.yaml in a random order, so an alert reads a recording rule's value of this evaluation
// or of the one before, and a test on a recorded rate passes one run and fails the next.
func TestRuleTestsEvaluateGroupsInOrder(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("prometheus", "rules_test.yaml"))
	require.NoError(t, err)
	var tests struct {
		GroupEvalOrder []string `json:"group_eval_order"`
	}
	require.NoError(t, yaml.Unmarshal(b, &tests))
	var groups []string
	for _, g := range rulesAsPrometheusRule(t).Spec.Groups {
		groups = append(groups, g.Name)
	}
	assert.Equal(t, groups, tests.GroupEvalOrder,
		"rules_test.yaml's group_eval_order is not rules.yaml's groups, recording rules first")
}
