// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// runbooks is where the alerts' runbook_url points, in the repository and on its web view.
const (
	runbooksDir = "../docs/runbooks"
	runbooksURL = "https://github.com/oomwatch/oomwatch/blob/main/docs/runbooks/"
)

// alertRule is what this test reads of an alerting rule.
type alertRule struct {
	Alert       string
	Labels      map[string]string
	Annotations map[string]string
}

func shippedAlerts(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("prometheus", "rules.yaml"))
	require.NoError(t, err)
	var file struct {
		Groups []struct{ Rules []alertRule }
	}
	require.NoError(t, yaml.Unmarshal(b, &file))
	var out []alertRule
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

// TestEveryAlertHasARunbook: each alert's runbook_url is its page in docs/runbooks, the page is
// there and says what the alert means, what to look at and what to change, and the index lists
// the alert with its severity. No page is left without its alert.
func TestEveryAlertHasARunbook(t *testing.T) {
	t.Parallel()
	index, err := os.ReadFile(filepath.Join(runbooksDir, "README.md"))
	require.NoError(t, err)
	pages := map[string]bool{}
	for _, a := range shippedAlerts(t) {
		page := a.Alert + ".md"
		pages[page] = true
		assert.Equal(t, runbooksURL+page, a.Annotations["runbook_url"], a.Alert)
		assert.Contains(t, []string{"warning", "critical"}, a.Labels["severity"], a.Alert)
		b, err := os.ReadFile(filepath.Join(runbooksDir, page))
		if !assert.NoError(t, err, a.Alert) {
			continue
		}
		assert.True(t, strings.HasPrefix(string(b), "# "+a.Alert+"\n"), "%s: the page's title", a.Alert)
		for _, part := range []string{"**What it means.**", "**What to look at.**", "**What to change.**"} {
			assert.Contains(t, string(b), part, a.Alert)
		}
		assert.Contains(t, string(index), "| `"+a.Alert+"` | "+a.Labels["severity"]+" | ["+page+"]("+page+") |", "%s in the index", a.Alert)
	}
	entries, err := os.ReadDir(runbooksDir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.Name() != "README.md" {
			assert.True(t, pages[e.Name()], "%s: a page without its alert", e.Name())
		}
	}
}

// TestAlertsGroupByCluster: every alert keeps k8s_cluster_name, so clusters that share a backend
// alert each on their own.
func TestAlertsGroupByCluster(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("prometheus", "rules.yaml"))
	require.NoError(t, err)
	var file struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	require.NoError(t, yaml.Unmarshal(b, &file))
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			for _, by := range strings.Split(r.Expr, " by (")[1:] {
				assert.True(t, strings.HasPrefix(by, "k8s_cluster_name,"), "%s: grouped by %s", r.Alert, strings.SplitN(by, ")", 2)[0])
			}
			assert.Contains(t, r.Expr, " by (", r.Alert)
		}
	}
}
