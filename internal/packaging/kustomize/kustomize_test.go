// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kustomize

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/deploy"
)

// TestBuildFSIsBuildOnDisk: the embedded manifests build to what the folder builds to.
func TestBuildFSIsBuildOnDisk(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{".", "gateway"} {
		embedded, err := BuildFS(deploy.Manifests, dir)
		require.NoError(t, err, dir)
		onDisk, err := Build(filepath.Join("..", "..", "..", "deploy", dir))
		require.NoError(t, err, dir)
		assert.Equal(t, string(onDisk), string(embedded), dir)
	}
}

// TestBuildOverlayBesideTheBase: an overlay that only names the base builds to the base, wherever
// the base is put; a path that is not the base's is refused, naming it.
func TestBuildOverlayBesideTheBase(t *testing.T) {
	t.Parallel()
	base, err := BuildFS(deploy.Manifests, ".")
	require.NoError(t, err)
	for _, at := range []string{"deploy", "vendor/oomwatch/deploy"} {
		got, err := BuildOverlay(deploy.Manifests, at, "resources: [../"+at+"]\n")
		require.NoError(t, err, at)
		assert.Equal(t, string(base), string(got), at)
	}
	_, err = BuildOverlay(deploy.Manifests, "deploy", "resources: [../elsewhere]\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "elsewhere")
}

// TestBuildIsKubectls: where kubectl is installed, `kubectl kustomize` gives the same output.
func TestBuildIsKubectls(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	for _, dir := range []string{".", "gateway"} {
		path := filepath.Join("..", "..", "..", "deploy", dir)
		want, err := exec.Command(kubectl, "kustomize", path).Output()
		require.NoError(t, err, dir)
		got, err := Build(path)
		require.NoError(t, err, dir)
		assert.Equal(t, string(want), string(got), dir)
	}
}

// TestOverlayElsewhere: an overlay kept in another folder, here a temporary one, names deploy/
// by its path relative to the overlay (kustomize refuses an absolute one) and patches it, as a
// test that runs the agent on the host network does.
func TestOverlayElsewhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	abs, err := filepath.Abs(filepath.Join("..", "..", "..", "deploy"))
	require.NoError(t, err)
	_, err = Build(overlay(t, dir, abs))
	require.ErrorContains(t, err, "cannot be absolute")

	base, err := filepath.Rel(dir, abs)
	require.NoError(t, err)
	out, err := Build(overlay(t, dir, base))
	require.NoError(t, err)
	assert.Contains(t, string(out), "hostNetwork: true")
	assert.Contains(t, string(out), "kind: ClusterRole\n")
}

func overlay(t *testing.T, dir, base string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(`resources:
  - `+base+`
patches:
  - patch: |
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {name: oomwatch-agent, namespace: oomwatch}
      spec:
        template:
          spec:
            hostNetwork: true
`), 0o600))
	return dir
}

func TestBuildNamesWhatFailed(t *testing.T) {
	t.Parallel()
	_, err := Build(t.TempDir())
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "kustomize build /"), err.Error())
}
