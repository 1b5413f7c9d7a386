// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/oomwatch/oomwatch/internal/packaging/dashboard"
)

// selectedSeries are the series names a query selects: a name followed by { or [.
var selectedSeries = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[\{\[]`)

// TestDashboardReadsWhatIsWritten: every panel of the shipped dashboard has a title and queries,
// each query selects only series the gateway writes or the shipped rules record, and is narrowed
// to the chosen clusters. (The end-to-end test runs the queries against a real Prometheus.)
func TestDashboardReadsWhatIsWritten(t *testing.T) {
	t.Parallel()
	b, err := Manifests.ReadFile("grafana/oomwatch.json")
	require.NoError(t, err)
	panels, err := dashboard.Panels(b, map[string]string{"cluster": "CLUSTER", "namespace": "NAMESPACE"})
	require.NoError(t, err)

	rules, err := os.ReadFile(filepath.Join("prometheus", "rules.yaml"))
	require.NoError(t, err)
	var file struct {
		Groups []struct{ Rules []struct{ Record string } }
	}
	require.NoError(t, yaml.Unmarshal(rules, &file))
	known := map[string]bool{
		// Written by the gateway (the oom_counter outputs).
		"k8s_container_oom_kills_total":         true,
		"k8s_container_process_oom_kills_total": true,
		"k8s_node_system_oom_kills_total":       true,
	}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}

	ids := map[int]bool{}
	require.GreaterOrEqual(t, len(panels), 4)
	for _, p := range panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		assert.NotEmpty(t, p.Title, p.ID)
		require.NotEmpty(t, p.Queries, p.Title)
		for _, q := range p.Queries {
			assert.Contains(t, q, `k8s_cluster_name=~"CLUSTER"`, "%s: narrowed to the chosen clusters", p.Title)
			for _, m := range selectedSeries.FindAllStringSubmatch(q, -1) {
				if name := m[1]; !strings.HasPrefix(name, "by") && name != "on" {
					assert.True(t, known[name], "%s: %s is neither written nor recorded", p.Title, name)
				}
			}
		}
	}
}
