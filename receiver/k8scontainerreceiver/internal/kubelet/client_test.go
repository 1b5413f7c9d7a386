// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kubelet

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

// ampleTimeout is the client timeout wherever the timeout is not what is tested: a TLS
// handshake under -race on a loaded machine can take seconds, and must not turn the outcome
// under test into a timeout.
const ampleTimeout = 10 * time.Second

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	// Like the kubelet: write aside, then swap atomically.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(token+"\n"), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func newServiceAccountClient(t *testing.T, k *kubelettest.Kubelet, timeout time.Duration) (*Client, string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeToken(t, tokenFile, "token-1")
	c, err := NewClient(Settings{
		AuthType:  AuthServiceAccount,
		CAFile:    k.WriteCA(t, dir),
		Timeout:   timeout,
		TokenFile: tokenFile,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, tokenFile
}

func TestSummaryWithServiceAccount(t *testing.T) {
	t.Parallel()
	k := kubelettest.New(t)
	k.SetSummary(kubelettest.Summary("node-a", kubelettest.Pod("default", "p", "u1", podtest.T0,
		kubelettest.Container("hog", podtest.T0, podtest.T0.Add(time.Minute), kubelettest.Usage{WorkingSet: 42}))))
	k.RequireToken("token-1")
	c, _ := newServiceAccountClient(t, k, ampleTimeout)

	s, err := c.Summary(context.Background(), k.Endpoint())
	require.NoError(t, err)
	require.Len(t, s.Pods, 1)
	assert.Equal(t, "node-a", s.Node.NodeName)
	assert.Equal(t, uint64(42), *s.Pods[0].Containers[0].Memory.WorkingSetBytes)

	// A URL works as well as host:port.
	_, err = c.Summary(context.Background(), k.URL())
	require.NoError(t, err)
}

func TestTokenRotation(t *testing.T) {
	t.Parallel()
	k := kubelettest.New(t)
	k.RequireToken("token-1")
	c, tokenFile := newServiceAccountClient(t, k, ampleTimeout)

	_, err := c.Summary(context.Background(), k.Endpoint())
	require.NoError(t, err)

	// The token rotates: the kubelet accepts only the new one, and the client reads it.
	k.RequireToken("token-2")
	writeToken(t, tokenFile, "token-2")
	_, err = c.Summary(context.Background(), k.Endpoint())
	require.NoError(t, err)
	assert.Equal(t, []string{"token-1", "token-2"}, k.Tokens())
}

func TestFailures(t *testing.T) {
	t.Parallel()
	// Only the timeout case gives the client a short timeout.
	const short = 200 * time.Millisecond
	tests := []struct {
		name    string
		setup   func(*kubelettest.Kubelet)
		timeout time.Duration
		reason  string
	}{
		{"500", func(k *kubelettest.Kubelet) { k.SetStatus(http.StatusInternalServerError) }, ampleTimeout, ReasonStatus},
		{"wrong token", func(k *kubelettest.Kubelet) { k.RequireToken("other") }, ampleTimeout, ReasonStatus},
		{"garbage", func(k *kubelettest.Kubelet) { k.SetGarbage([]byte("<html>not json")) }, ampleTimeout, ReasonDecode},
		{"truncated", func(k *kubelettest.Kubelet) { k.SetGarbage([]byte(`{"node":{"nodeName":"a"`)) }, ampleTimeout, ReasonDecode},
		// The kubelet waits far longer than the client does; it stops when the client gives up.
		{"timeout", func(k *kubelettest.Kubelet) { k.SetDelay(time.Minute) }, short, ReasonTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := kubelettest.New(t)
			tt.setup(k)
			c, _ := newServiceAccountClient(t, k, tt.timeout)
			_, err := c.Summary(context.Background(), k.Endpoint())
			var ke *Error
			require.ErrorAs(t, err, &ke)
			assert.Equal(t, tt.reason, ke.Reason, "%v", err)
		})
	}
}

func TestVerificationIsOnByDefault(t *testing.T) {
	t.Parallel()
	k := kubelettest.New(t)
	c, err := NewClient(Settings{AuthType: AuthNone, Timeout: ampleTimeout})
	require.NoError(t, err)
	_, err = c.Summary(context.Background(), k.Endpoint())
	var ke *Error
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, ReasonTransport, ke.Reason)
	assert.ErrorContains(t, err, "certificate")

	insecure, err := NewClient(Settings{AuthType: AuthNone, Timeout: ampleTimeout, InsecureSkipVerify: true})
	require.NoError(t, err)
	_, err = insecure.Summary(context.Background(), k.Endpoint())
	require.NoError(t, err)
}

func TestKubeConfigCredentials(t *testing.T) {
	t.Parallel()
	k := kubelettest.New(t)
	k.RequireToken("from-kubeconfig")
	c, err := NewClient(Settings{
		AuthType:   AuthKubeConfig,
		CAFile:     k.WriteCA(t, t.TempDir()),
		Timeout:    ampleTimeout,
		RestConfig: &rest.Config{BearerToken: "from-kubeconfig"},
	})
	require.NoError(t, err)
	_, err = c.Summary(context.Background(), k.Endpoint())
	require.NoError(t, err)
}

func TestConfigurationErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := NewClient(Settings{AuthType: AuthServiceAccount, TokenFile: filepath.Join(dir, "none"), InsecureSkipVerify: true})
	assert.ErrorContains(t, err, "kubelet token")
	_, err = NewClient(Settings{AuthType: AuthNone, CAFile: filepath.Join(dir, "none")})
	assert.ErrorContains(t, err, "kubelet CA")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.crt"), []byte("nope"), 0o600))
	_, err = NewClient(Settings{AuthType: AuthNone, CAFile: filepath.Join(dir, "bad.crt")})
	assert.ErrorContains(t, err, "no certificate")
	_, err = NewClient(Settings{AuthType: AuthTLS, CertFile: filepath.Join(dir, "none"), KeyFile: filepath.Join(dir, "none")})
	assert.ErrorContains(t, err, "client certificate")
	_, err = NewClient(Settings{AuthType: AuthKubeConfig})
	assert.ErrorContains(t, err, "kubeconfig")
	_, err = NewClient(Settings{AuthType: "basic"})
	assert.ErrorContains(t, err, `"basic"`)
}
