// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// requireE2E skips unless OOMWATCH_E2E=1 and the test runs as root: a real node changes the host.
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("OOMWATCH_E2E") != "1" {
		t.Skip("set OOMWATCH_E2E=1 (as root, after `make cluster-bin cluster-deps`) to run against a real local cluster")
	}
	if os.Geteuid() != 0 {
		t.Skip("a real node needs root")
	}
}

// TestSmokeRealOOMKill starts the cluster with its real node, runs a container that leaks past
// its 64Mi limit, sees the kernel's OOM kill in the pod status, and checks that teardown leaves
// nothing behind, twice.
func TestSmokeRealOOMKill(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	opts := Options{Node: true, StandinNodeName: "oomwatch-standin", Log: testlog.T(t)}
	before, err := readSysctls()
	require.NoError(t, err)

	began := time.Now()
	c, err := Start(ctx, opts)
	t.Cleanup(func() { _ = Teardown(context.Background(), opts) })
	require.NoError(t, err)
	t.Logf("start to node Ready: %s", time.Since(began).Round(10*time.Millisecond))

	cs, err := c.Client()
	require.NoError(t, err)
	standin, err := cs.CoreV1().Nodes().Get(ctx, "oomwatch-standin", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "true", standin.Labels["oomwatch.dev/standin"])

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke-leak", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:    c.Options().NodeName,
			HostNetwork: true,
			Containers: []corev1.Container{{
				Name:            "leak",
				Image:           testworkload.WorkloadImage,
				ImagePullPolicy: corev1.PullNever,
				Env:             []corev1.EnvVar{{Name: "WORKLOAD_MODE", Value: "leak"}},
				Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
			}},
		},
	}
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
	})
	require.NoError(t, err)
	defer w.Stop()
	created := time.Now()
	_, err = cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)

	var term *corev1.ContainerStateTerminated
	for term == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("no OOMKilled seen: %v", ctx.Err())
		case ev, ok := <-w.ResultChan():
			require.True(t, ok, "watch closed")
			if ev.Type != watch.Modified {
				continue
			}
			p := ev.Object.(*corev1.Pod)
			for _, st := range p.Status.ContainerStatuses {
				for _, s := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
					if s != nil && s.Reason == "OOMKilled" {
						term = s
					}
				}
			}
		}
	}
	t.Logf("pod created to OOMKilled in pod status: %s (exit code %d)", time.Since(created).Round(10*time.Millisecond), term.ExitCode)
	assert.Equal(t, int32(137), term.ExitCode)

	// An open watch would hold the API server's shutdown for up to --request-timeout.
	w.Stop()
	zero := int64(0)
	require.NoError(t, cs.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))

	stopBegan := time.Now()
	require.NoError(t, c.Stop(ctx))
	t.Logf("teardown: %s", time.Since(stopBegan).Round(10*time.Millisecond))
	assertNothingLeft(t, c, before)

	// A second teardown finds nothing to do and changes nothing.
	require.NoError(t, Teardown(ctx, opts))
	assertNothingLeft(t, c, before)
}

func assertNothingLeft(t *testing.T, c *Cluster, sysctls map[string]string) {
	t.Helper()
	o := c.Options()
	for name, p := range c.state.Procs {
		assert.False(t, p.alive(), "%s still running", name)
	}
	for _, bin := range []string{"etcd", "kube-apiserver", controllerManager, scheduler, nodeLease, "containerd", "containerd-shim-runc-v2", "kubelet"} {
		assert.Empty(t, pidsRunning(c.Bin(bin)), "%s still running", bin)
	}
	mps, err := mountsUnder(append([]string{o.VarDir, o.RunDir}, fixedHostPaths...)...)
	require.NoError(t, err)
	assert.Empty(t, mps, "mounts left")
	hs, err := cgroupHierarchies()
	require.NoError(t, err)
	for _, h := range hs {
		assert.NoDirExists(t, filepath.Join(h, o.CgroupRoot))
		assert.NoDirExists(t, filepath.Join(h, o.CgroupRoot+".system"))
	}
	now, err := readSysctls()
	require.NoError(t, err)
	assert.Equal(t, sysctls, now, "sysctls not restored")
	for _, p := range append([]string{o.VarDir, o.RunDir}, fixedHostPaths...) {
		assert.NoFileExists(t, p)
		assert.NoDirExists(t, p)
	}
}

// pidsRunning returns the processes whose executable is bin.
func pidsRunning(bin string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && strings.TrimSuffix(exe, " (deleted)") == bin {
			out = append(out, e.Name())
		}
	}
	return out
}
