// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/packaging/kustomize"
)

// prometheusOperatorTypes is the Go package of prometheus-operator's API types (the version the
// root module requires), from which controller-gen writes its CRDs, as its own build does.
const prometheusOperatorTypes = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

// prometheusOperatorCRDs writes the CRDs of prometheus-operator's v1 types with controller-gen
// (pinned in hack/tools/controller-gen) and returns them, one manifest per file.
func prometheusOperatorCRDs(t *testing.T) map[string][]byte {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	dir := t.TempDir()
	cmd := exec.Command("go", "tool", "-modfile=hack/tools/controller-gen/go.mod", "controller-gen",
		"crd:crdVersions=v1,maxDescLen=0", "paths="+prometheusOperatorTypes, "output:crd:dir="+dir)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "controller-gen: %s", out)
	crds := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		crds[e.Name()] = b
	}
	return crds
}

// TestPrometheusOperatorObjectsAccepted: with prometheus-operator's CRDs installed, the real API
// server takes deploy/prometheus-operator as it ships, validated against the CRDs' schemas (a
// rule that breaks the schema is refused, so the validation is on).
func TestPrometheusOperatorObjectsAccepted(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	crds := prometheusOperatorCRDs(t)
	for _, name := range []string{"monitoring.coreos.com_prometheusrules.yaml", "monitoring.coreos.com_podmonitors.yaml"} {
		require.Contains(t, crds, name)
		require.NoError(t, s.cluster.Apply(ctx, crds[name]), name)
	}
	require.NoError(t, s.cluster.EnsureNamespace(ctx, "oomwatch-gateway"))
	manifest, err := kustomize.BuildFS(deploy.Manifests, "prometheus-operator")
	require.NoError(t, err)
	// A CRD serves its kind once it is established, a moment after it is created.
	var applyErr error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if applyErr = s.cluster.Apply(ctx, manifest); applyErr == nil || time.Now().After(deadline) {
			break
		}
	}
	require.NoError(t, applyErr, "deploy/prometheus-operator")

	bad := strings.Replace(string(manifest), "for: 10m", "for: ten minutes", 1)
	require.NotEqual(t, string(manifest), bad)
	err = s.cluster.Apply(ctx, []byte(bad))
	require.Error(t, err, "a duration the schema refuses")
	assert.Contains(t, err.Error(), "ten minutes")
}
