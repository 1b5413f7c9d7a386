// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
)

func TestTokenKubeconfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path, ca := filepath.Join(dir, "agent.kubeconfig"), filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("client-go reads it only when it connects"), 0o600))
	require.NoError(t, clientcmd.WriteToFile(tokenKubeconfig("https://127.0.0.1:36443", ca, "oomwatch-agent", "tok"), path))
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:36443", cfg.Host)
	assert.Equal(t, "tok", cfg.BearerToken)
	assert.Equal(t, ca, cfg.CAFile)
	assert.False(t, cfg.Insecure)
	assert.Empty(t, cfg.CertFile, "only the service account's token, no other credential")
}
