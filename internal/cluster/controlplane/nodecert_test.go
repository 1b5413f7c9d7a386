// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Another node's kubelet gets a client certificate of the cluster's CA, under its own identity.
func TestWriteNodeClientCert(t *testing.T) {
	t.Parallel()
	c := &Cluster{pki: pki{dir: filepath.Join(t.TempDir(), "pki")}}
	require.NoError(t, c.pki.ensure("node-a", "", nil))
	dir := t.TempDir()
	require.NoError(t, c.WriteNodeClientCert(dir, "kubelet", "node-b"))

	ca, _, err := loadPair(c.CAFile(), c.pki.path("ca.key"))
	require.NoError(t, err)
	crt, _, err := loadPair(filepath.Join(dir, "kubelet.crt"), filepath.Join(dir, "kubelet.key"))
	require.NoError(t, err)
	require.NoError(t, crt.CheckSignatureFrom(ca))
	assert.Equal(t, "system:node:node-b", crt.Subject.CommonName)
	assert.Equal(t, []string{"system:nodes"}, crt.Subject.Organization)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, crt.ExtKeyUsage)
}
