// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestWriteKubeconfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &Cluster{opts: Options{Dir: dir, APIServerPort: 36443}, pki: pki{dir: filepath.Join(dir, "pki")}}
	require.NoError(t, c.pki.ensure("node-a", "", nil))

	// A service account's token.
	agent := filepath.Join(dir, "agent", "agent.kubeconfig")
	require.NoError(t, c.writeKubeconfig(agent, "oomwatch-agent", &clientcmdapi.AuthInfo{Token: "tok"}))
	cfg, err := clientcmd.BuildConfigFromFlags("", agent)
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:36443", cfg.Host)
	assert.Equal(t, "tok", cfg.BearerToken)
	assert.Equal(t, c.CAFile(), cfg.CAFile)
	assert.False(t, cfg.Insecure)
	assert.Empty(t, cfg.CertFile, "only the service account's token, no other credential")

	// One of the cluster's own users: a client certificate from the pki folder.
	require.NoError(t, c.writeKubeconfigs())
	cfg, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig())
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:36443", cfg.Host)
	assert.Equal(t, c.CAFile(), cfg.CAFile)
	assert.Equal(t, c.pki.path(adminName+".crt"), cfg.CertFile)
	assert.Equal(t, c.pki.path(adminName+".key"), cfg.KeyFile)
	assert.Empty(t, cfg.BearerToken)
	for _, name := range []string{"kubelet", controllerManagerName, schedulerName} {
		assert.FileExists(t, c.kubeconfigPath(name))
	}
}
