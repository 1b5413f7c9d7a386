// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2node

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
	"github.com/oomwatch/oomwatch/internal/procstat"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// TestV2NodeSmoke starts the control plane on this host and a cgroup v2 node in a QEMU guest,
// waits for the node to be Ready, runs a container that leaks past its 64Mi limit there, and
// sees the kernel's OOM kill both in the pod status (OOMKilled) and in the container cgroup's
// memory.events (oom_group_kill 1). It logs how long each step took under TCG and, with
// OOMWATCH_V2_CPU=1 (make v2-node-smoke), the kubelet's CPU time over a minute, and checks that
// teardown leaves nothing on the host.
func TestV2NodeSmoke(t *testing.T) {
	if os.Getenv("OOMWATCH_E2E") != "1" {
		t.Skip("set OOMWATCH_E2E=1 (as root, after `make cluster-bin cluster-deps` and make v2-node-kernel) to run the cgroup v2 node in QEMU")
	}
	// The OOM kill tests' node and control plane go first: this test starts and stops its own.
	stopShared(testlog.T(t))
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	cpOpts := controlplane.Options{Log: testlog.T(t)}
	cpOpts, err := cpOpts.Defaults()
	require.NoError(t, err)
	nodeOpts := Options{Log: testlog.T(t)}
	if err := Check(nodeOpts, cpOpts.ModuleDir); err != nil {
		t.Skipf("the v2 node cannot run here: %v", err)
	}

	c, err := controlplane.Start(ctx, cpOpts)
	t.Cleanup(func() { _ = controlplane.Teardown(context.Background(), cpOpts) })
	require.NoError(t, err)
	t.Logf("control plane ready: %s", time.Since(began).Round(10*time.Millisecond))
	cs, err := c.Client()
	require.NoError(t, err)

	n, err := Start(ctx, c, nodeOpts)
	t.Cleanup(func() { _ = Teardown(nodeOpts, cpOpts.ModuleDir) })
	require.NoError(t, err)
	name := n.Options().NodeName
	dumpOnFailure(t, n)

	for _, kind := range []string{"root-ready", "containerd-ready", "images-imported", "kubelet-started"} {
		m, err := n.Wait(ctx, kind, nil)
		require.NoError(t, err)
		t.Logf("guest %s: %s after the boot (guest uptime %ss)", kind, m.At.Sub(n.Booted).Round(10*time.Millisecond), field(m, 0))
	}
	kubeletStarted, _ := n.Wait(ctx, "kubelet-started", nil)
	kubeletPID := field(kubeletStarted, 1)
	ticksPerSecond, err := strconv.ParseFloat(field(kubeletStarted, 2), 64)
	require.NoError(t, err)

	registered, ready := waitNode(ctx, t, cs, name)
	t.Logf("node %s registered %s after the kubelet started; Ready %s after registering",
		name, registered.Sub(kubeletStarted.At).Round(10*time.Millisecond), ready.Sub(registered).Round(10*time.Millisecond))
	node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	t.Logf("node %s: kernel %s, kubelet %s, runtime %s", name, node.Status.NodeInfo.KernelVersion,
		node.Status.NodeInfo.KubeletVersion, node.Status.NodeInfo.ContainerRuntimeVersion)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "v2-leak", Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			NodeName:      name,
			HostNetwork:   true,
			RestartPolicy: corev1.RestartPolicyNever,
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
	created := time.Now()
	_, err = cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	var running, killed time.Time
	var term *corev1.ContainerStateTerminated
	var containerID string
	for term == nil {
		p, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		require.NoError(t, err)
		for _, st := range p.Status.ContainerStatuses {
			if st.State.Running != nil && running.IsZero() {
				running = time.Now()
			}
			if s := st.State.Terminated; s != nil {
				term, containerID, killed = s, st.ContainerID, time.Now()
			}
		}
		if term == nil {
			select {
			case <-ctx.Done():
				t.Fatalf("the pod never terminated: %v; its status: %+v", ctx.Err(), p.Status)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	if !running.IsZero() {
		t.Logf("pod created to Running: %s; Running to terminated: %s", running.Sub(created).Round(10*time.Millisecond), killed.Sub(running).Round(10*time.Millisecond))
	}
	t.Logf("pod created to terminated in its status: %s (reason %s, exit code %d)", killed.Sub(created).Round(10*time.Millisecond), term.Reason, term.ExitCode)
	require.Equal(t, "OOMKilled", term.Reason)
	assert.Equal(t, int32(137), term.ExitCode)

	// The container's own cgroup, /kubepods/burstable/pod<uid>/<container id>, as the guest saw it.
	id := containerID[strings.Index(containerID, "://")+3:]
	oom, err := n.Wait(ctx, "oom", func(m Marker) bool { return strings.HasSuffix(field(m, 0), "/"+id+"/memory.events") })
	require.NoError(t, err)
	events := memoryEvents(oom.Fields[1:])
	t.Logf("guest %s: %v", field(oom, 0), oom.Fields[1:])
	assert.Equal(t, "1", events["oom_group_kill"], "oom_group_kill in the container's memory.events")
	assert.NotEqual(t, "0", events["oom_kill"], "oom_kill in the container's memory.events")

	if os.Getenv("OOMWATCH_V2_CPU") == "1" {
		measureKubeletCPU(ctx, t, n, killed, kubeletPID, ticksPerSecond)
	} else {
		t.Log("the kubelet's CPU time over a minute: set OOMWATCH_V2_CPU=1 (make v2-node-smoke)")
	}

	zero := int64(0)
	require.NoError(t, cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	stopBegan := time.Now()
	require.NoError(t, n.Stop())
	require.NoError(t, c.Stop(ctx))
	t.Logf("teardown: %s", time.Since(stopBegan).Round(10*time.Millisecond))
	assert.NoDirExists(t, n.Options().RunDir)
	assert.Empty(t, pidsOf(QEMU), "QEMU still running")
	// A second teardown finds nothing to do.
	require.NoError(t, Teardown(nodeOpts, cpOpts.ModuleDir))
	t.Logf("whole test: %s", time.Since(began).Round(10*time.Millisecond))
}

// measureKubeletCPU logs the guest kubelet's CPU time over a minute after killed, and QEMU's on
// the host over about the same minute.
func measureKubeletCPU(ctx context.Context, t *testing.T, n *Node, killed time.Time, kubeletPID string, ticksPerSecond float64) {
	t.Helper()
	// The kubelet's CPU time over a minute, from its /proc/<pid>/stat in the guest, with one pod
	// (terminated) on the node.
	// QEMU's own CPU time on the host over about the same minute says what the idle node costs
	// this machine under TCG.
	st, err := readState(n.Options().RunDir)
	require.NoError(t, err)
	from, err := n.Wait(ctx, "kubelet-cpu", func(m Marker) bool { return !m.At.Before(killed) })
	require.NoError(t, err)
	qemuFrom, qemuFromAt := hostCPU(t, st.PID), time.Now()
	to, err := n.Wait(ctx, "kubelet-cpu", func(m Marker) bool { return guestUptime(m)-guestUptime(from) >= 60 })
	require.NoError(t, err)
	qemuTo, qemuToAt := hostCPU(t, st.PID), time.Now()
	ticks, _ := strconv.ParseFloat(field(to, 1), 64)
	ticks0, _ := strconv.ParseFloat(field(from, 1), 64)
	secs := guestUptime(to) - guestUptime(from)
	t.Logf("kubelet (pid %s in the guest): %.1f CPU seconds over %.0f s of guest time (%.0f%% of one vCPU)",
		kubeletPID, (ticks-ticks0)/ticksPerSecond, secs, 100*(ticks-ticks0)/ticksPerSecond/secs)
	hostSecs := qemuToAt.Sub(qemuFromAt).Seconds()
	qemu := (qemuTo - qemuFrom).Seconds()
	t.Logf("QEMU on the host meanwhile: %.1f CPU seconds over %.0f s (%.0f%% of one core)", qemu, hostSecs, 100*qemu/hostSecs)
}

// waitNode polls for the node object and for its Ready condition; it returns when each was seen.
func waitNode(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) (registered, ready time.Time) {
	t.Helper()
	for {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if registered.IsZero() {
				registered = time.Now()
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return registered, time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %s not Ready: %v (registered: %v)", name, ctx.Err(), !registered.IsZero())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// dumpOnFailure logs the end of the guest's console and logs when the test fails.
func dumpOnFailure(t *testing.T, n *Node) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range []string{n.ConsoleLog(), n.GuestLog("containerd.log"), n.GuestLog("kubelet.log")} {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("---- end of %s:\n%s", filepath.Base(p), strings.Join(lines, "\n"))
		}
	})
}

// hostCPU is the CPU time a host process has used.
func hostCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	d, err := procstat.CPUTime(pid)
	require.NoError(t, err)
	return d
}

func field(m Marker, i int) string {
	if i < len(m.Fields) {
		return m.Fields[i]
	}
	return ""
}

func guestUptime(m Marker) float64 {
	f, _ := strconv.ParseFloat(field(m, 0), 64)
	return f
}

// memoryEvents reads the "key value" pairs of a flattened memory.events.
func memoryEvents(fields []string) map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		out[fields[i]] = fields[i+1]
	}
	return out
}

// pidsOf returns the processes whose executable's base name is name.
func pidsOf(name string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && filepath.Base(exe) == name {
			out = append(out, e.Name())
		}
	}
	return out
}
