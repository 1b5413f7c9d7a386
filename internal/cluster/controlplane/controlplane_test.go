// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/internal/procstat"
)

func TestPKIKeepsCAAcrossRuns(t *testing.T) {
	t.Parallel()
	p := pki{dir: filepath.Join(t.TempDir(), "pki")}
	require.NoError(t, p.ensure("node-a", "standin-a", []net.IP{net.ParseIP("192.0.2.2")}))
	ca1, err := os.ReadFile(p.path("ca.crt"))
	require.NoError(t, err)
	srv1, err := os.ReadFile(p.path("apiserver.crt"))
	require.NoError(t, err)

	require.NoError(t, p.ensure("node-a", "standin-a", nil))
	ca2, err := os.ReadFile(p.path("ca.crt"))
	require.NoError(t, err)
	srv2, err := os.ReadFile(p.path("apiserver.crt"))
	require.NoError(t, err)
	assert.Equal(t, ca1, ca2, "a restarted API server must serve under the same CA")
	assert.Equal(t, srv1, srv2)

	// The node's address changed: a new kubelet serving certificate, the same CA.
	require.NoError(t, p.ensure("node-a", "standin-a", []net.IP{net.ParseIP("192.0.2.3")}))
	ca3, err := os.ReadFile(p.path("ca.crt"))
	require.NoError(t, err)
	assert.Equal(t, ca1, ca3)

	caCert, _, err := loadPair(p.path("ca.crt"), p.path("ca.key"))
	require.NoError(t, err)
	kubelet, _, err := loadPair(p.path("kubelet-server.crt"), p.path("kubelet-server.key"))
	require.NoError(t, err)
	require.NoError(t, kubelet.CheckSignatureFrom(caCert))
	assert.Contains(t, kubelet.DNSNames, "node-a")
	assert.True(t, kubelet.IPAddresses[1].Equal(net.ParseIP("192.0.2.3")))
	node, _, err := loadPair(p.path("kubelet-client.crt"), p.path("kubelet-client.key"))
	require.NoError(t, err)
	assert.Equal(t, "system:node:node-a", node.Subject.CommonName)
	assert.Equal(t, []string{"system:nodes"}, node.Subject.Organization)
	for _, f := range []string{"service-account.key", "service-account.pub", "admin.crt", "apiserver-kubelet-client.crt"} {
		assert.FileExists(t, p.path(f))
	}

	// The controllers' identities are the user names the bootstrap RBAC policy binds, and the
	// same certificates serve their endpoints on loopback.
	for name, cn := range map[string]string{"controller-manager": "system:kube-controller-manager", "scheduler": "system:kube-scheduler"} {
		cert, _, err := loadPair(p.path(name+".crt"), p.path(name+".key"))
		require.NoError(t, err)
		assert.Equal(t, cn, cert.Subject.CommonName)
		assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, cert.ExtKeyUsage)
		require.NoError(t, cert.VerifyHostname("127.0.0.1"))
	}

	// The stand-in node is renamed: its node identity follows.
	standin, _, err := loadPair(p.path("standin-client.crt"), p.path("standin-client.key"))
	require.NoError(t, err)
	assert.Equal(t, "system:node:standin-a", standin.Subject.CommonName)
	require.NoError(t, p.ensure("node-a", "standin-b", nil))
	standin, _, err = loadPair(p.path("standin-client.crt"), p.path("standin-client.key"))
	require.NoError(t, err)
	assert.Equal(t, "system:node:standin-b", standin.Subject.CommonName)
	assert.Equal(t, []string{"system:nodes"}, standin.Subject.Organization)
}

func TestUnescapeMount(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "/var/lib/a b", unescapeMount(`/var/lib/a\040b`))
	assert.Equal(t, "/plain", unescapeMount("/plain"))
}

func TestProcStartTimeNamesThisProcess(t *testing.T) {
	t.Parallel()
	st, err := procstat.StartTime(os.Getpid())
	require.NoError(t, err)
	p := proc{PID: os.Getpid(), StartTime: st}
	assert.True(t, p.alive())
	p.StartTime++
	assert.False(t, p.alive(), "a pid with another start time is another process")
}

func TestIsMainModule(t *testing.T) {
	t.Parallel()
	assert.True(t, isMainModule([]byte("// c\nmodule github.com/oomwatch/oomwatch\n\ngo 1.26.0\n")))
	assert.False(t, isMainModule([]byte("module github.com/oomwatch/oomwatch/hack/cluster/build/etcd\n")))
}

func TestWaitForNamesWhatItAwaited(t *testing.T) {
	t.Parallel()
	st, err := procstat.StartTime(os.Getpid())
	require.NoError(t, err)
	c := &Cluster{
		opts:  Options{Dir: t.TempDir(), ReadyTimeout: 300 * time.Millisecond},
		state: state{Procs: map[string]proc{"self": {PID: os.Getpid(), StartTime: st}}},
	}
	ctx := context.Background()

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	require.NoError(t, c.waitFor(ctx, "self", "readyz", answersOK(srv.Client(), srv.URL+"/readyz")))

	err = c.waitFor(ctx, "self", "healthz to answer 200", answersOK(srv.Client(), srv.URL+"/healthz"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "healthz to answer 200")
	assert.Contains(t, err.Error(), filepath.Join(c.opts.Dir, "logs", "self.log"))

	err = c.waitFor(ctx, "gone", "node Ready", func(context.Context) bool { return true })
	require.Error(t, err, "a process that is not running is not waited for")
	assert.Contains(t, err.Error(), "gone exited while waiting for node Ready")
}
