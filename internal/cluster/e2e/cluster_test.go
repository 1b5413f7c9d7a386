// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// TestDaemonSetModeCountsEachContainerOnce: one collector per node, each watching only its own
// node's pods: every container is counted by exactly one of them.
func TestDaemonSetModeCountsEachContainerOnce(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-daemonset")
	real := startAgent(t, agentOptions{node: s.realNode, name: "real"})
	standin := startAgent(t, agentOptions{node: standinNode, kubelet: "off", name: "standin"})

	onReal := createPod(t, ns, "on-real", s.realNode, corev1.RestartPolicyNever, nil, leaker("app"))
	onStandin := standinPod(t, ns, "on-standin")
	onStandin = writeStatus(t, onStandin, running("app", 0, ""))
	standin.waitOOMs(string(onStandin.UID), "app", 0, 30*time.Second)
	writeStatus(t, onStandin, ended("app", 0, "OOMKilled", ""))

	real.waitOOMs(string(onReal.UID), "app", 1, 90*time.Second)
	standin.waitOOMs(string(onStandin.UID), "app", 1, 30*time.Second)
	// One more scrape of each collector: a container of the other node would be in it.
	now := time.Now()
	real.waitReports(string(onReal.UID), "app", now, 1)
	standin.waitReports(string(onStandin.UID), "app", now, 1)
	for _, c := range []struct {
		a     *agent
		other string
		node  string
	}{{real, string(onStandin.UID), s.realNode}, {standin, string(onReal.UID), standinNode}} {
		_, ok := c.a.ooms(c.other, "app")
		assert.False(t, ok, "a collector counted a container of the other node")
		for _, p := range c.a.sink.Points("k8s.container.oom_kills", nil) {
			assert.Equal(t, c.node, p.Resource["k8s.node.name"], "a collector reported a pod of another node")
		}
	}
}

// TestAPIServerRestartAndCompaction: the collector is frozen while the API server is killed and
// restarted and three OOM kills are written, then etcd is compacted, so the collector's watch
// resumes from a revision that is gone (410 Gone) and its informer relists. The kill that the
// API server still shows is counted, the instances merged away are unattributed, and nothing
// already counted is counted again.
func TestAPIServerRestartAndCompaction(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-apiserver")
	a := startAgent(t, agentOptions{node: standinNode, kubelet: "off"})
	pod := standinPod(t, ns, "app")
	uid := string(pod.UID)
	pod = writeStatus(t, pod, running("app", 0, ""))
	pod = writeStatus(t, pod, ended("app", 0, "OOMKilled", ""))
	pod = writeStatus(t, pod, running("app", 1, "OOMKilled"))
	a.waitOOMs(uid, "app", 1, 30*time.Second)
	// The revision the collector has seen last.
	seenRevision := pod.ResourceVersion

	require.NoError(t, syscall.Kill(a.proc.PID(), syscall.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(a.proc.PID(), syscall.SIGCONT)
		}
	}
	defer resume()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, s.cluster.StopAPIServer(true))
	require.NoError(t, s.cluster.StartAPIServer(ctx))
	// Instances 1, 2 and 3 are OOM-killed while the collector cannot look; 4 runs.
	for i := int32(1); i <= 3; i++ {
		pod = writeStatus(t, pod, ended("app", i, "OOMKilled", "OOMKilled"))
		pod = writeStatus(t, pod, running("app", i+1, "OOMKilled"))
	}
	compactEtcd(t, s.cluster.EtcdEndpoint())
	requireGone(ctx, t, ns, "app", seenRevision)
	resume()

	// The status shows instance 3's kill: counted. Instances 1 and 2 went by unseen.
	a.waitOOMs(uid, "app", 2, 60*time.Second)
	p := a.waitReports(uid, "app", time.Now(), 2)
	assert.Equal(t, 2.0, p.Value, "no kill counted twice")
	assert.Contains(t, selfMetric(t, a, "otelcol_oom_counter_restarts_unattributed"), " 2")
}

// requireGone checks that a watch from revision is refused with 410 Gone: what the collector's
// informer meets when it resumes.
func requireGone(ctx context.Context, t *testing.T, ns, name, revision string) {
	t.Helper()
	s := need(t)
	w, err := s.admin.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: revision,
	})
	if err != nil {
		require.Truef(t, apierrors.IsResourceExpired(err) || apierrors.IsGone(err), "watch from %s: %v", revision, err)
		return
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		require.Equal(t, watch.Error, ev.Type, "watch from %s: %v", revision, ev.Object)
		status := apierrors.FromObject(ev.Object)
		require.Truef(t, apierrors.IsResourceExpired(status) || apierrors.IsGone(status), "watch from %s: %v", revision, status)
	case <-time.After(10 * time.Second):
		t.Fatalf("a watch from the compacted revision %s was not refused", revision)
	}
}

// compactEtcd compacts etcd at its current revision through its JSON gateway.
func compactEtcd(t *testing.T, endpoint string) {
	t.Helper()
	post := func(path string, body any) map[string]any {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		resp, err := http.Post(endpoint+path, "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	header := post("/v3/kv/range", map[string]any{"key": "AA==", "limit": 1})["header"].(map[string]any)
	rev := fmt.Sprint(header["revision"])
	post("/v3/kv/compaction", map[string]any{"revision": rev, "physical": true})
	t.Logf("etcd compacted at revision %s", rev)
}
