// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package helme2e installs deploy/helm/oomwatch into a local cluster of its own with Helm's own
// code, as `helm install` does, and checks that the agent it runs counts a real OOM kill.
package helme2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
	"github.com/oomwatch/oomwatch/internal/packaging/helmchart"
	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// TestHelmInstalledAgentCountsAKill: the image of make image imported into the node; the chart
// installed with Helm's SDK into the namespace oomwatch, waited for as `helm install --wait`
// does, with the values a user of this cluster sets (the agent on the host network, which has no
// pod network, DNS or kube-proxy, and pushing in plaintext to a backend on the host). The kernel
// OOM-kills a container: the backend shows one kill for it. `helm uninstall` removes what the
// install made.
func TestHelmInstalledAgentCountsAKill(t *testing.T) {
	if os.Getenv("OOMWATCH_E2E") != "1" {
		t.Skip("set OOMWATCH_E2E=1 and run as root (make e2e) to run against a local cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	opts := controlplane.Options{Node: true, Log: testlog.T(t)}
	c, err := controlplane.Start(ctx, opts)
	t.Cleanup(func() { _ = controlplane.Teardown(context.Background(), opts) })
	require.NoError(t, err)
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	archive := filepath.Join(root, "_build", "image", "otelcol-oomwatch.tar")
	_, err = os.Stat(archive)
	require.NoError(t, err, "the collector image is not built (make image)")
	require.NoError(t, c.ImportImage(ctx, archive))
	cs, err := c.Client()
	require.NoError(t, err)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	endpoint := l.Addr().String()
	require.NoError(t, l.Close())
	sink := otlpsink.New(endpoint)
	require.NoError(t, sink.Start(ctx))
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })

	node := c.Options().NodeName
	values := map[string]any{
		"clusterName": "local",
		"agent": map[string]any{
			"hostNetwork":  true,
			"nodeSelector": map[string]any{"kubernetes.io/hostname": node},
			"otlpEndpoint": endpoint,
			"insecure":     true,
			"stateDir":     filepath.Join(t.TempDir(), "state"),
			"extraEnv": []any{
				map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
				map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": fmt.Sprint(c.Options().APIServerPort)},
			},
		},
		"gateway": map[string]any{"enabled": false},
	}
	ch, err := helmchart.Load(root)
	require.NoError(t, err)
	began := time.Now()
	manifest, err := helmchart.Install(ctx, c.AdminKubeconfig(), ch, "oomwatch", "oomwatch", values, 3*time.Minute)
	require.NoError(t, err)
	t.Logf("helm install: %d objects, the agent ready after %s", len(helmchart.Documents(manifest)), time.Since(began).Round(time.Second))
	ds, err := cs.AppsV1().DaemonSets("oomwatch").Get(ctx, "oomwatch-agent", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(1), ds.Status.NumberReady, "one agent, on the real node")

	pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "leaky", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name:            "hog",
				Image:           testworkload.WorkloadImage,
				ImagePullPolicy: corev1.PullNever,
				Env:             []corev1.EnvVar{{Name: "WORKLOAD_MODE", Value: "leak"}},
				Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
			}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		term := p.Status.ContainerStatuses[0].State.Terminated
		return term != nil && term.Reason == "OOMKilled"
	}, 2*time.Minute, time.Second, "the kernel did not OOM-kill the container")

	match := map[string]string{"k8s.pod.uid": string(pod.UID), "k8s.container.name": "hog", "k8s.cluster.name": "local"}
	require.Eventually(t, func() bool {
		p, ok := sink.Latest("k8s.container.oom_kills", match)
		return ok && p.Value == 1
	}, time.Minute, time.Second, "the agent Helm installed does not count the kill")

	require.NoError(t, helmchart.Uninstall(c.AdminKubeconfig(), "oomwatch", "oomwatch"))
	_, err = cs.RbacV1().ClusterRoles().Get(ctx, "oomwatch-agent", metav1.GetOptions{})
	assert.Error(t, err, "helm uninstall removes the agent's ClusterRole")
	require.Eventually(t, func() bool {
		_, err := cs.AppsV1().DaemonSets("oomwatch").Get(ctx, "oomwatch-agent", metav1.GetOptions{})
		return err != nil
	}, time.Minute, time.Second, "helm uninstall removes the DaemonSet")
}
