// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package testcerts

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIssuedCertificatesChainToTheirCAOnly(t *testing.T) {
	dir := t.TempDir()
	ca := NewCA(t, "test CA")
	other := NewCA(t, "another CA")
	certFile, keyFile := ca.Issue(t, dir, "server", x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.2"))
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)

	roots := x509.NewCertPool()
	b, err := os.ReadFile(ca.WriteCert(t, dir, "ca.crt"))
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM(b))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err)
	require.NoError(t, leaf.VerifyHostname("127.0.0.2"))
	assert.Error(t, leaf.VerifyHostname("127.0.0.1"))

	wrong := x509.NewCertPool()
	require.True(t, wrong.AppendCertsFromPEM(other.PEM))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: wrong})
	assert.Error(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.Error(t, err, "a serving certificate is no client certificate")
}
