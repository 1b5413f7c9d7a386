// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package apiclient

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: "https://one.example:6443"}
- name: two
  cluster: {server: "https://two.example:6443"}
users:
- name: me
  user: {token: secret}
contexts:
- name: ctx-one
  context: {cluster: one, user: me}
- name: ctx-two
  context: {cluster: two, user: me}
current-context: ctx-one
`

func TestKubeConfigFollowsKUBECONFIGAndContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.WriteFile(path, []byte(kubeconfig), 0o600))
	t.Setenv("KUBECONFIG", path)

	cfg, err := RestConfig(AuthKubeConfig, "")
	require.NoError(t, err)
	assert.Equal(t, "https://one.example:6443", cfg.Host)
	assert.Equal(t, "secret", cfg.BearerToken)
	assert.Equal(t, userAgent, cfg.UserAgent)

	cfg, err = RestConfig(AuthKubeConfig, "ctx-two")
	require.NoError(t, err)
	assert.Equal(t, "https://two.example:6443", cfg.Host)

	_, err = RestConfig(AuthKubeConfig, "missing")
	assert.ErrorContains(t, err, "missing")
}

func TestNoneUsesTheInClusterAddress(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	cfg, err := RestConfig(AuthNone, "")
	require.NoError(t, err)
	assert.Equal(t, "https://10.96.0.1:443", cfg.Host)
	assert.Empty(t, cfg.BearerToken)

	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err = RestConfig(AuthNone, "")
	assert.ErrorContains(t, err, "KUBERNETES_SERVICE_HOST")
}

func TestServiceAccountOutsideACluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err := RestConfig(AuthServiceAccount, "")
	assert.ErrorContains(t, err, "in-cluster")
	_, err = RestConfig("token", "")
	assert.ErrorContains(t, err, `"token"`)
}
