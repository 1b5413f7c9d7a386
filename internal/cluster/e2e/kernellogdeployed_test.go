// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDeployedAgentWithKernelLogNamesTheVictim: deploy/ with components/kernel-log, from the
// image make image writes, on the real node: the collector container, root and privileged,
// reads /dev/kmsg, and the kill records in VictoriaLogs name the process the kernel killed, with
// the limit its report names. The base's agent, without the component, is the deployed test's.
func TestDeployedAgentWithKernelLogNamesTheVictim(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	root := importCollectorImage(t)

	logs := startVictoriaLogs(t)
	certs := makeOTLPCerts(t, "127.0.0.1", "127.0.0.4")
	// No metrics backend: the records are what this test is about.
	gateway := startGatewayReplica(t, "127.0.0.4", "http://127.0.0.1:9/api/v1/write", "http://127.0.0.1:9/api/v1/otlp/v1/metrics", logs.otlpLogs(), certs)
	service := startRoundRobin(t, gateway.otlp())

	applyAgent(t, overlay(t, root, service.addr(), filepath.Join(s.dir, "agent-state-kernel-log"), certs, "kernel-log"))
	began := time.Now()
	pod := agentPod(t, "", 3*time.Minute)
	t.Logf("agent pod %s Ready in %s", pod.Name, time.Since(began).Round(time.Second))
	otelcol := pod.Spec.Containers[0]
	require.NotNil(t, otelcol.SecurityContext.Privileged)
	require.True(t, *otelcol.SecurityContext.Privileged, "the component's agent")

	ns := namespace(t, "shop-kernel-log")
	kills := watchDeploymentKills(t, ns, "app=memhog")
	for _, d := range []*appsv1.Deployment{memhogDeployment(ns)} {
		_, err := s.admin.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		_ = s.admin.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	})

	query := `event_name:="k8s.container.oom_kill" AND "k8s.namespace.name":="` + ns + `"`
	var records []map[string]string
	require.Eventually(t, func() bool {
		var err error
		records, err = logs.query(query)
		return err == nil && len(records) >= 2
	}, 3*time.Minute, time.Second, "VictoriaLogs: fewer than 2 kill records (the API server shows %d kills)", kills.count())
	logAgent(t, pod)
	for _, r := range records {
		t.Logf("kill record: %v", r)
		assert.Equal(t, "found", r["k8s.oom.kernel_report"], "the agent read the kernel's report")
		assert.Equal(t, "workload", r["process.executable.name"])
		pid, err := strconv.Atoi(r["process.pid"])
		require.NoError(t, err, "process.pid")
		assert.Positive(t, pid)
		assert.Equal(t, "container", r["k8s.oom.scope"], "memhog's own 64Mi limit")
		assert.Equal(t, "true", r["k8s.oom.main_process"])
	}
	t.Logf("test time: %s", time.Since(began).Round(time.Second))
}
