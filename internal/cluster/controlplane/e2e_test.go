// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// TestE2EAPIServerRestartKeepsCA kills the API server and starts it again: clients made before
// keep working, since the certificates in the pki folder are reused.
func TestE2EAPIServerRestartKeepsCA(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := Options{Log: testlog.T(t)}
	c, err := Start(ctx, opts)
	t.Cleanup(func() { _ = Teardown(context.Background(), opts) })
	require.NoError(t, err)
	cs, err := c.Client()
	require.NoError(t, err)
	_, err = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
	require.NoError(t, err)

	require.NoError(t, c.StopAPIServer(true))
	_, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	require.Error(t, err, "the API server is down")
	began := time.Now()
	require.NoError(t, c.StartAPIServer(ctx))
	t.Logf("API server back after %s", time.Since(began).Round(10*time.Millisecond))
	_, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	require.NoError(t, err, "the old client must trust the restarted API server")
	require.NoError(t, c.Stop(ctx))
}

// kubeletSourceRBAC is the role deploy/components/kubelet-source adds.
const kubeletSourceRBAC = "components/kubelet-source/rbac.yaml"

// TestE2EDeployRBACIsEnough applies deploy/'s namespace and RBAC and uses a token of the agent's
// service account the way the collector does: what it needs is allowed, with the API server's
// Node,RBAC authorizers and the kubelet's webhook authorizer, and nothing else is.

func TestE2EDeployRBACIsEnough(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := Options{Node: true, Log: testlog.T(t)}
	c, err := Start(ctx, opts)
	t.Cleanup(func() { _ = Teardown(context.Background(), opts) })
	require.NoError(t, err)

	for _, f := range []string{"namespace.yaml", "rbac.yaml"} {
		b, err := fs.ReadFile(deploy.Manifests, f)
		require.NoError(t, err)
		require.NoError(t, c.Apply(ctx, b), f)
	}
	require.NoError(t, c.EnsureNamespace(ctx, "oomwatch"))

	admin, err := c.Client()
	require.NoError(t, err)
	agent, agentToken := tokenClient(ctx, t, c, admin, "oomwatch", "oomwatch-agent")
	_, otherToken := tokenClient(ctx, t, c, admin, "oomwatch", "default")
	node := c.Options().NodeName

	// What the receiver does against the API server.
	_, err = agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	require.NoError(t, err)
	w, err := agent.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	require.NoError(t, err)
	w.Stop()
	n, err := agent.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	require.NoError(t, err)

	// And nothing more.
	_, err = agent.CoreV1().Secrets("oomwatch").List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "secrets: %v", err)
	_, err = agent.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "nodes list: %v", err)
	_, err = agent.CoreV1().ConfigMaps("oomwatch").List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "configmaps: %v", err)
	err = agent.CoreV1().Pods("default").Delete(ctx, "x", metav1.DeleteOptions{})
	assert.True(t, apierrors.IsForbidden(err), "pod delete: %v", err)

	// The kubelet, through its webhook authentication and authorization, at the endpoint the
	// Node object advertises, verified against the cluster CA.
	var addr string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
		}
	}
	require.NotEmpty(t, addr)
	base := fmt.Sprintf("https://%s:%d", addr, n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	kubeletGet := func(path, token string) int {
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(c.CAFile())
		require.NoError(t, err)
		require.True(t, pool.AppendCertsFromPEM(ca))
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, kubeletGet("/stats/summary", agentToken))
	assert.Equal(t, http.StatusUnauthorized, kubeletGet("/stats/summary", ""))
	assert.Equal(t, http.StatusUnauthorized, kubeletGet("/stats/summary", "not-a-token"))
	assert.Equal(t, http.StatusForbidden, kubeletGet("/stats/summary", otherToken))
	assert.Equal(t, http.StatusForbidden, kubeletGet("/pods", agentToken), "nodes/proxy is not granted")
	assert.Equal(t, http.StatusForbidden, kubeletGet("/metrics/cadvisor", agentToken), "nodes/metrics only with the kubelet source")

	// With components/kubelet-source, /metrics/cadvisor too (once the kubelet's cache of the
	// refusal, 5 s here, expires).
	b, err := fs.ReadFile(deploy.Manifests, kubeletSourceRBAC)
	require.NoError(t, err)
	require.NoError(t, c.Apply(ctx, b), kubeletSourceRBAC)
	assert.Eventually(t, func() bool { return kubeletGet("/metrics/cadvisor", agentToken) == http.StatusOK },
		30*time.Second, time.Second, "/metrics/cadvisor with components/kubelet-source")
	require.NoError(t, c.Stop(ctx))
}

// tokenClient returns a client and a bound token of a service account, as a pod would get them.
func tokenClient(ctx context.Context, t *testing.T, c *Cluster, admin kubernetes.Interface, ns, sa string) (kubernetes.Interface, string) {
	t.Helper()
	expiry := int64(600)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	cfg := &rest.Config{
		Host:            c.APIServerURL(),
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile()},
	}
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return cs, tr.Status.Token
}

// TestE2EStandinNodeTakesWrittenStatuses writes a pod status on the kubelet-less node the way a
// kubelet would, and reads it back: nothing else changes it, since no kubelet runs there and the
// node lifecycle controller sees the node alive.
func TestE2EStandinNodeTakesWrittenStatuses(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := Options{StandinNodeName: "oomwatch-standin", Log: testlog.T(t)}
	c, err := Start(ctx, opts)
	t.Cleanup(func() { _ = Teardown(context.Background(), opts) })
	require.NoError(t, err)
	cs, err := c.Client()
	require.NoError(t, err)
	require.NoError(t, c.EnsureNamespace(ctx, "standin"))

	pod, err := cs.CoreV1().Pods("standin").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "written"},
		Spec: corev1.PodSpec{
			NodeName:   "oomwatch-standin",
			Containers: []corev1.Container{{Name: "app", Image: "docker.io/oomwatch/workload:dev"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Image: "docker.io/oomwatch/workload:dev", RestartCount: 3,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "OOMKilled", StartedAt: now, FinishedAt: now, ContainerID: "containerd://c3",
			}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "OOMKilled", StartedAt: now, FinishedAt: now, ContainerID: "containerd://c2",
			}},
		}},
	}
	_, err = cs.CoreV1().Pods("standin").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)

	got, err := cs.CoreV1().Pods("standin").Get(ctx, "written", metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, got.Status.ContainerStatuses, 1)
	st := got.Status.ContainerStatuses[0]
	assert.Equal(t, int32(3), st.RestartCount)
	assert.Equal(t, "OOMKilled", st.State.Terminated.Reason)
	assert.Equal(t, "containerd://c2", st.LastTerminationState.Terminated.ContainerID)

	// Without a kubelet to confirm, only a zero grace period removes the pod.
	zero := int64(0)
	require.NoError(t, cs.CoreV1().Pods("standin").Delete(ctx, "written", metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	_, err = cs.CoreV1().Pods("standin").Get(ctx, "written", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "pod still there: %v", err)
	require.NoError(t, c.Stop(ctx))
}
