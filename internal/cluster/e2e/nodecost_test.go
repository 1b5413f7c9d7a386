// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomwatch/oomwatch/internal/packaging/deployconfig"
	"github.com/oomwatch/oomwatch/internal/procstat"
	"github.com/oomwatch/oomwatch/internal/testing/collectorrun"
	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// nodeCostPods is how many running pods the node holds while its cost is measured.
const nodeCostPods = 20

// cpuTime is the CPU time a process has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	d, err := procstat.CPUTime(pid)
	require.NoError(t, err)
	return d
}

// perMinute is CPU time used over a wall-clock span, scaled to one minute.
func perMinute(cpu, span time.Duration) time.Duration {
	return time.Duration(float64(cpu) * float64(time.Minute) / float64(span)).Round(time.Millisecond)
}

// TestNodeCostOfEachProcessKillSource measures what the agent costs the real node with each
// process-kill source, as deploy/ ships it (config.yaml, 10 s interval, file_storage): the
// agent's own CPU time and RSS, and the kubelet CPU time it causes, against the kubelet alone, with
// nodeCostPods running pods. Each phase runs OOMWATCH_NODE_COST_WINDOW (default 2m) after 30 s to
// settle. A measurement, not a default test: OOMWATCH_NODE_COST=1 (make node-cost) runs it.
func TestNodeCostOfEachProcessKillSource(t *testing.T) {
	if os.Getenv("OOMWATCH_NODE_COST") != "1" {
		t.Skip("a measurement: set OOMWATCH_NODE_COST=1 (make node-cost)")
	}
	s := need(t)
	window := 2 * time.Minute
	if w := os.Getenv("OOMWATCH_NODE_COST_WINDOW"); w != "" {
		var err error
		window, err = time.ParseDuration(w)
		require.NoError(t, err)
	}
	const settle = 30 * time.Second
	ctx := context.Background()

	ns := namespace(t, "e2e-nodecost")
	for i := range nodeCostPods {
		createPod(t, ns, fmt.Sprintf("steady-%02d", i), s.realNode, corev1.RestartPolicyAlways, nil,
			workload("app", "64Mi", map[string]string{"WORKLOAD_MB": "8"}))
	}
	require.Eventually(t, func() bool {
		pods, err := s.admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == nodeCostPods
	}, 3*time.Minute, time.Second, "%d pods running", nodeCostPods)

	kubelet := func() int {
		pid, ok := s.cluster.PID("kubelet")
		require.True(t, ok, "the kubelet runs")
		return pid
	}
	type phase struct {
		name                string
		kubeletCPU, selfCPU time.Duration
		rss                 int64
	}
	var phases []phase
	// measure waits settle, then takes the CPU time of the kubelet and of agent (0: none) over
	// the window.
	measure := func(name string, agent int) phase {
		time.Sleep(settle)
		k := kubelet()
		k0, began := cpuTime(t, k), time.Now()
		var a0 time.Duration
		if agent != 0 {
			a0 = cpuTime(t, agent)
		}
		time.Sleep(window)
		span := time.Since(began)
		require.Equal(t, k, kubelet(), "the kubelet restarted while measured")
		p := phase{name: name, kubeletCPU: perMinute(cpuTime(t, k)-k0, span)}
		if agent != 0 {
			p.selfCPU = perMinute(cpuTime(t, agent)-a0, span)
			var err error
			p.rss, err = procstat.RSS(agent)
			require.NoError(t, err)
		}
		t.Logf("%s: kubelet %s CPU per minute, agent %s, RSS %.1f MB", p.name, p.kubeletCPU, p.selfCPU, float64(p.rss)/1e6)
		return p
	}
	phases = append(phases, measure("kubelet alone", 0))

	shipped, err := deployconfig.Agent()
	require.NoError(t, err)
	// The agent on this host reaches the API server and the kubelet with the service account's
	// kubeconfig rather than a pod's token.
	shipped = strings.ReplaceAll(shipped, "auth_type: serviceAccount", "auth_type: kubeConfig")
	for _, source := range []struct{ name, root string }{{"kubelet", ""}, {"cgroup", "/sys/fs/cgroup"}} {
		sink := otlpsink.New(fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		require.NoError(t, sink.Start(ctx))
		dir := filepath.Join(t.TempDir(), source.name)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "state"), 0o700))
		const ip = "127.0.0.9"
		startCtx, cancel := context.WithTimeout(ctx, time.Minute)
		c, err := collectorrun.Start(startCtx, collectorrun.Options{
			Binary: s.collector,
			Config: shipped,
			Dir:    dir,
			Env: []string{
				"KUBECONFIG=" + s.kubeconfig, "K8S_NODE_NAME=" + s.realNode, "POD_IP=" + ip,
				"OTLP_ENDPOINT=" + sink.Endpoint(), "OTLP_INSECURE=true",
				"OOMWATCH_STATE_DIR=" + filepath.Join(dir, "state"),
				"OOMWATCH_PROCESS_OOM_KILLS_SOURCE=" + source.name, "OOMWATCH_CGROUP_ROOT=" + source.root,
			},
			HealthURL: "http://" + ip + ":13133/",
			Log:       testlog.Prefixed("agent " + source.name + ": "),
		})
		cancel()
		require.NoError(t, err)
		p := measure("agent, "+source.name+" source", c.PID())
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		require.NoError(t, c.Stop(stopCtx))
		cancel()
		_ = sink.Stop(ctx)

		// What was measured is an agent at work: the stats of every pod, and a process-kill
		// counter for every container.
		seen := map[string]bool{}
		for _, pt := range sink.Points("k8s.container.process.oom_kills", map[string]string{"k8s.namespace.name": ns}) {
			seen[pt.Resource["k8s.pod.name"]] = true
		}
		require.Len(t, seen, nodeCostPods, "%s source: process-kill counters of the pods", source.name)
		phases = append(phases, p)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%d pods, window %s each:\n| | kubelet CPU per minute | caused by the agent | agent CPU per minute | agent RSS |\n|---|---|---|---|---|\n", nodeCostPods, window)
	for _, p := range phases {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f MB |\n", p.name, p.kubeletCPU, p.kubeletCPU-phases[0].kubeletCPU, p.selfCPU, float64(p.rss)/1e6)
	}
	t.Log(b.String())
}
