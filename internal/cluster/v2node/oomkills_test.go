// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
)

// The real OOM kills whose counting differs on cgroup v2, on the v2 node, as a user sees them at
// the OTLP backend of each process-kill source (see main_test.go), against the kernel's own
// memory.events of the container's cgroup, which guestwatch reads in the guest.

const (
	metricOOMKills        = "k8s.container.oom_kills"
	metricProcessOOMKills = "k8s.container.process.oom_kills"
)

// workloadPod runs the test workload in one container "app" with a 64Mi limit on the node.
func (s *suite) workloadPod(ctx context.Context, t *testing.T, name string, restart corev1.RestartPolicy, env map[string]string) *corev1.Pod {
	t.Helper()
	return s.workloadPodLimited(ctx, t, name, "64Mi", restart, env)
}

// workloadPodLimited runs the test workload in one container "app" with a memory limit on the
// node; none ("") makes the pod BestEffort.
func (s *suite) workloadPodLimited(ctx context.Context, t *testing.T, name, limit string, restart corev1.RestartPolicy, env map[string]string) *corev1.Pod {
	t.Helper()
	return s.createPod(ctx, t, s.newWorkloadPod(name, limit, restart, env))
}

// newWorkloadPod is the pod workloadPodLimited creates.
func (s *suite) newWorkloadPod(name, limit string, restart corev1.RestartPolicy, env map[string]string) *corev1.Pod {
	c := corev1.Container{
		Name:            "app",
		Image:           testworkload.WorkloadImage,
		ImagePullPolicy: corev1.PullNever,
	}
	if limit != "" {
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)}
	}
	for k, v := range env {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			NodeName:      s.nodeOpts.NodeName,
			HostNetwork:   true,
			RestartPolicy: restart,
			Containers:    []corev1.Container{c},
		},
	}
}

// createPod creates the pod, deleted when the test ends.
func (s *suite) createPod(ctx context.Context, t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	created, err := s.cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		zero := int64(0)
		_ = s.cs.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	return created
}

// waitPod polls the pod every 250 ms until f holds.
func (s *suite) waitPod(ctx context.Context, t *testing.T, name string, within time.Duration, f func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p, err := s.cs.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		if f(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: not there within %s; its status: %+v", name, within, p.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// memoryEventsOf is the container instance's memory.events as guestwatch last printed it, and
// whether it printed it (it prints a cgroup's file once it counts a kill, and at each change).
func (s *suite) memoryEventsOf(containerID string) (map[string]uint64, bool) {
	id := containerID[strings.Index(containerID, "://")+3:]
	var last []string
	for _, m := range s.node.Markers("oom") {
		if strings.HasSuffix(field(m, 0), "/"+id+"/memory.events") {
			last = m.Fields[1:]
		}
	}
	if last == nil {
		return nil, false
	}
	out := map[string]uint64{}
	for k, v := range memoryEvents(last) {
		n, _ := strconv.ParseUint(v, 10, 64)
		out[k] = n
	}
	return out, true
}

// waitMemoryEvents waits until guestwatch printed the instance's memory.events with f holding.
func (s *suite) waitMemoryEvents(t *testing.T, containerID string, within time.Duration, f func(map[string]uint64) bool) map[string]uint64 {
	t.Helper()
	var last map[string]uint64
	require.Eventuallyf(t, func() bool {
		ev, ok := s.memoryEventsOf(containerID)
		last = ev
		return ok && f(ev)
	}, within, 50*time.Millisecond, "memory.events of %s: last printed %v", containerID, last)
	return last
}

// values are the latest k8s.container.oom_kills and k8s.container.process.oom_kills of a
// container at one backend; -1 where none arrived.
type values struct{ containerKills, processKills float64 }

func (v values) String() string {
	return fmt.Sprintf("oom_kills %v, process.oom_kills %v", v.containerKills, v.processKills)
}

func (s *suite) latest(src, podUID string) values {
	match := map[string]string{"k8s.pod.uid": podUID, "k8s.container.name": "app"}
	v := values{-1, -1}
	if p, ok := s.sinks[src].Latest(metricOOMKills, match); ok {
		v.containerKills = p.Value
	}
	if p, ok := s.sinks[src].Latest(metricProcessOOMKills, match); ok {
		v.processKills = p.Value
	}
	return v
}

// settled waits until each backend holds want (or the deadline), then two scrapes more, and
// returns what each backend holds then.
func (s *suite) settled(t *testing.T, podUID string, want func(src string, v values) bool) map[string]values {
	t.Helper()
	deadline := time.Now().Add(8 * agentInterval)
	for time.Now().Before(deadline) {
		done := true
		for _, src := range sources {
			done = done && want(src, s.latest(src, podUID))
		}
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * agentInterval)
	out := map[string]values{}
	for _, src := range sources {
		out[src] = s.latest(src, podUID)
	}
	return out
}

// TestV2NodeBackOffOOMKillsCounted: a container (restartPolicy Always) leaks past its 64Mi
// limit, is OOM-killed, restarted after the back-off and OOM-killed again. Each instance's cgroup
// counts one group kill; k8s.container.oom_kills reaches the number of kills at both backends.
func TestV2NodeBackOffOOMKillsCounted(t *testing.T) {
	s := nodeWith(t, false)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	pod := s.workloadPod(ctx, t, "v2-backoff", corev1.RestartPolicyAlways, map[string]string{"WORKLOAD_MODE": "leak"})
	uid := string(pod.UID)

	// The instances that ended, by container ID, as the API server shows them.
	ended := map[string]corev1.ContainerStateTerminated{}
	s.waitPod(ctx, t, pod.Name, 3*time.Minute, func(p *corev1.Pod) bool {
		st, err := containerStatus(p, "app")
		if err != nil {
			return false
		}
		for _, term := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
			if term != nil && term.ContainerID != "" {
				ended[term.ContainerID] = *term
			}
		}
		return len(ended) >= 2
	})
	t.Logf("two instances ended %s after the pod was created", time.Since(began).Round(10*time.Millisecond))
	var kernelKills uint64
	for id, term := range ended {
		assert.Equal(t, "OOMKilled", term.Reason, "instance %.20s", id)
		assert.Equal(t, int32(137), term.ExitCode, "instance %.20s", id)
		ev := s.waitMemoryEvents(t, id, 30*time.Second, func(ev map[string]uint64) bool { return ev["oom_group_kill"] > 0 })
		t.Logf("instance %.20s: memory.events %v", bareID(id), ev)
		assert.Equal(t, uint64(1), ev["oom_group_kill"], "one group kill of instance %.20s", id)
		kernelKills += ev["oom_group_kill"]
	}
	want := float64(len(ended))
	got := s.settled(t, uid, func(_ string, v values) bool { return v.containerKills >= want })
	// The next instance runs after a 20 s back-off: it may have been killed meanwhile.
	p, err := s.cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	st, err := containerStatus(p, "app")
	require.NoError(t, err)
	for _, term := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
		if term != nil && term.ContainerID != "" {
			ended[term.ContainerID] = *term
		}
	}
	want = float64(len(ended))
	for _, src := range sources {
		t.Logf("source %s: %s (kills in the pod status %v, group kills in memory.events %d, restart count %d)", src, got[src], want, kernelKills, st.RestartCount)
		assert.Equal(t, want, got[src].containerKills, "k8s.container.oom_kills at the %s backend", src)
	}
}

// TestV2NodeChildOOMIsAGroupKill: PID 1 of a container (restartPolicy Never) starts one child that
// leaks past the limit. Under the kubelet's default memory.oom.group=1 the OOM kills every process
// of the container, PID 1 with the child: the container ends OOMKilled, memory.events counts one
// group kill, and k8s.container.oom_kills counts 1 at both backends. The cgroup source counts no
// process kill for a group kill; what the kubelet source shows is logged.
func TestV2NodeChildOOMIsAGroupKill(t *testing.T) {
	s := nodeWith(t, false)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	pod := s.workloadPod(ctx, t, "v2-child-group", corev1.RestartPolicyNever,
		map[string]string{"WORKLOAD_MODE": "child-oom", "WORKLOAD_CHILDREN": "1"})
	uid := string(pod.UID)
	p := s.waitPod(ctx, t, pod.Name, 2*time.Minute, func(p *corev1.Pod) bool {
		st, err := containerStatus(p, "app")
		return err == nil && st.State.Terminated != nil
	})
	st, err := containerStatus(p, "app")
	require.NoError(t, err)
	term := st.State.Terminated
	t.Logf("the container ended %s after the pod was created: %s, exit code %d", time.Since(began).Round(10*time.Millisecond), term.Reason, term.ExitCode)
	assert.Equal(t, "OOMKilled", term.Reason)
	assert.Equal(t, int32(137), term.ExitCode, "PID 1 killed with the child")
	ev := s.waitMemoryEvents(t, st.ContainerID, 30*time.Second, func(ev map[string]uint64) bool { return ev["oom_group_kill"] > 0 })
	t.Logf("memory.events %v", ev)
	assert.Equal(t, uint64(1), ev["oom_group_kill"])
	assert.GreaterOrEqual(t, ev["oom_kill"], uint64(2), "the child and PID 1 killed")

	got := s.settled(t, uid, func(_ string, v values) bool { return v.containerKills >= 1 })
	for _, src := range sources {
		t.Logf("source %s: %s", src, got[src])
		assert.Equal(t, float64(1), got[src].containerKills, "k8s.container.oom_kills at the %s backend", src)
	}
	assert.Equal(t, float64(0), got[sourceCgroup].processKills, "k8s.container.process.oom_kills with the cgroup source: a group kill is no process kill")
}

// TestV2NodeSingleProcessOOMKill: with the kubelet's singleProcessOOMKill: true the OOM kills the
// child alone: the container lives, memory.events counts one kill and no group kill, and
// k8s.container.process.oom_kills is 1 with each source, k8s.container.oom_kills 0.
func TestV2NodeSingleProcessOOMKill(t *testing.T) {
	s := nodeWith(t, true)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	got, ev, st := s.childKills(ctx, t, "v2-child-single", 1)
	assert.Equal(t, uint64(1), ev["oom_kill"])
	assert.Equal(t, uint64(0), ev["oom_group_kill"])
	assert.NotNil(t, st.State.Running, "PID 1 lives")
	assert.Zero(t, st.RestartCount)
	for _, src := range sources {
		assert.Equal(t, float64(1), got[src].processKills, "k8s.container.process.oom_kills with the %s source", src)
		assert.Equal(t, float64(0), got[src].containerKills, "k8s.container.oom_kills at the %s backend", src)
	}
}

// TestV2NodeProcessKillSourcesMatchMemoryEvents: with singleProcessOOMKill, three children are
// OOM-killed one after another while PID 1 lives; each source's k8s.container.process.oom_kills
// equals oom_kill of the container's memory.events, read in the guest.
func TestV2NodeProcessKillSourcesMatchMemoryEvents(t *testing.T) {
	s := nodeWith(t, true)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	const children = 3
	got, ev, st := s.childKills(context.Background(), t, "v2-children", children)
	assert.Equal(t, uint64(children), ev["oom_kill"], "every child killed, PID 1 never")
	assert.Equal(t, uint64(0), ev["oom_group_kill"])
	assert.Zero(t, st.RestartCount)
	for _, src := range sources {
		assert.Equal(t, float64(ev["oom_kill"]), got[src].processKills, "k8s.container.process.oom_kills with the %s source against memory.events", src)
	}
}

// childKills runs a container whose PID 1 starts children leaking one after another, waits until
// memory.events counts them all, then for both backends to settle; it returns what they show,
// memory.events and the container's status then.
func (s *suite) childKills(ctx context.Context, t *testing.T, name string, children int) (map[string]values, map[string]uint64, corev1.ContainerStatus) {
	t.Helper()
	began := time.Now()
	pod := s.workloadPod(ctx, t, name, corev1.RestartPolicyNever,
		map[string]string{"WORKLOAD_MODE": "child-oom", "WORKLOAD_CHILDREN": strconv.Itoa(children)})
	uid := string(pod.UID)
	p := s.waitPod(ctx, t, name, 2*time.Minute, func(p *corev1.Pod) bool {
		st, err := containerStatus(p, "app")
		return err == nil && st.ContainerID != "" && (st.State.Running != nil || st.State.Terminated != nil)
	})
	st, err := containerStatus(p, "app")
	require.NoError(t, err)
	ev := s.waitMemoryEvents(t, st.ContainerID, 2*time.Minute, func(ev map[string]uint64) bool {
		return ev["oom_kill"] >= uint64(children) || ev["oom_group_kill"] > 0
	})
	t.Logf("memory.events counted %d kill(s) %s after the pod was created", ev["oom_kill"], time.Since(began).Round(10*time.Millisecond))
	got := s.settled(t, uid, func(_ string, v values) bool { return v.processKills >= float64(children) })
	ev, _ = s.memoryEventsOf(st.ContainerID)
	p, err = s.cs.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	st, err = containerStatus(p, "app")
	require.NoError(t, err)
	t.Logf("memory.events %v; container running %v, restarts %d", ev, st.State.Running != nil, st.RestartCount)
	for _, src := range sources {
		t.Logf("source %s: %s", src, got[src])
	}
	return got, ev, st
}

// TestV2NodeSummaryPSIUnderMemoryPressure: a container whose children keep leaking to its limit
// and being OOM-killed one by one (singleProcessOOMKill) is under memory pressure. The kubelet's
// Summary API, read from the host through the node's forward of its port with the agent's
// token, shows the container's PSI fields; they are logged. What is asserted is what held in
// every run: the container is listed with memory PSI, its averages are percentages, and its
// memory "some" total is not 0. The totals are not compared across reads: their unit is not
// stable (see the log). The agent reads the stall time from the container's cgroup instead: the
// cgroup source's backend shows container.memory.pressure.stall_time, some and full, each never
// falling, some above 0 and at least full.
func TestV2NodeSummaryPSIUnderMemoryPressure(t *testing.T) {
	s := nodeWith(t, true)
	began := time.Now()
	defer func() { t.Logf("case time: %s", time.Since(began).Round(10*time.Millisecond)) }()
	ctx := context.Background()
	pod := s.workloadPod(ctx, t, "v2-pressure", corev1.RestartPolicyNever, map[string]string{"WORKLOAD_MODE": "child-oom"})
	p := s.waitPod(ctx, t, pod.Name, 2*time.Minute, func(p *corev1.Pod) bool {
		st, err := containerStatus(p, "app")
		return err == nil && st.State.Running != nil
	})
	st, err := containerStatus(p, "app")
	require.NoError(t, err)
	s.waitMemoryEvents(t, st.ContainerID, 2*time.Minute, func(ev map[string]uint64) bool { return ev["oom_kill"] >= 2 })

	const reads = 8
	var listed, withPSI, fell int
	var prev uint64
	for i := 0; i < reads; i++ {
		sum, err := s.summary(ctx)
		require.NoError(t, err, "the kubelet's Summary API through the forward of its port")
		c := summaryContainer(sum, string(pod.UID), "app")
		if c == nil {
			t.Logf("summary %d: the container is not listed", i)
			time.Sleep(time.Second)
			continue
		}
		listed++
		var ws uint64
		if c.Memory != nil && c.Memory.WorkingSetBytes != nil {
			ws = *c.Memory.WorkingSetBytes
		}
		t.Logf("summary %d: working set %d MiB; memory PSI %s; cpu PSI %s; io PSI %s", i, ws>>20,
			psiString(memoryPSI(c)), psiString(cpuPSI(c)), psiString(ioPSI(c)))
		if mp := memoryPSI(c); mp != nil {
			withPSI++
			for _, d := range []v1alpha1.PSIData{mp.Some, mp.Full} {
				for _, avg := range []float64{d.Avg10, d.Avg60, d.Avg300} {
					assert.True(t, avg >= 0 && avg <= 100, "summary %d: a memory PSI average of %v%%", i, avg)
				}
			}
			assert.NotZero(t, mp.Some.Total, "summary %d: memory some total", i)
			if mp.Some.Total < prev {
				fell++
			}
			prev = mp.Some.Total
		}
		time.Sleep(time.Second)
	}
	ev, _ := s.memoryEventsOf(st.ContainerID)
	t.Logf("memory.events then: %v; %d of %d reads listed the container, %d with memory PSI; the memory some total went down %d time(s)",
		ev, listed, reads, withPSI, fell)
	assert.Positive(t, listed, "the Summary API lists the container")
	assert.Equal(t, listed, withPSI, "memory PSI in every read that lists the container")

	match := map[string]string{"k8s.pod.uid": string(pod.UID), "k8s.container.name": "app"}
	stalls := func(kind string) []float64 {
		var out []float64
		for _, p := range s.sinks[sourceCgroup].Points("container.memory.pressure.stall_time", match) {
			if p.Attrs["pressure.type"] == kind {
				out = append(out, p.Value)
			}
		}
		return out
	}
	require.Eventually(t, func() bool {
		some := stalls("some")
		return len(some) > 0 && some[len(some)-1] > 0
	}, 30*time.Second, time.Second, "no memory stall time above 0 at the cgroup source's backend")
	some, full := stalls("some"), stalls("full")
	t.Logf("the agent's container.memory.pressure.stall_time, some: %v; full: %v", some, full)
	require.NotEmpty(t, full)
	for _, series := range [][]float64{some, full} {
		for i := 1; i < len(series); i++ {
			assert.GreaterOrEqual(t, series[i], series[i-1], "a stall total never falls")
		}
	}
	assert.GreaterOrEqual(t, some[len(some)-1], full[len(full)-1], "some stall includes full")
	assert.Empty(t, s.sinks[sourceKubelet].Points("container.memory.pressure.stall_time", match), "the kubelet source reads no cgroup")
}

func summaryContainer(sum *v1alpha1.Summary, podUID, name string) *v1alpha1.ContainerStats {
	for i := range sum.Pods {
		if sum.Pods[i].PodRef.UID != podUID {
			continue
		}
		for j := range sum.Pods[i].Containers {
			if sum.Pods[i].Containers[j].Name == name {
				return &sum.Pods[i].Containers[j]
			}
		}
	}
	return nil
}

func memoryPSI(c *v1alpha1.ContainerStats) *v1alpha1.PSIStats {
	if c.Memory == nil {
		return nil
	}
	return c.Memory.PSI
}

func cpuPSI(c *v1alpha1.ContainerStats) *v1alpha1.PSIStats {
	if c.CPU == nil {
		return nil
	}
	return c.CPU.PSI
}

func ioPSI(c *v1alpha1.ContainerStats) *v1alpha1.PSIStats {
	if c.IO == nil {
		return nil
	}
	return c.IO.PSI
}

func psiString(p *v1alpha1.PSIStats) string {
	if p == nil {
		return "absent"
	}
	d := func(x v1alpha1.PSIData) string {
		return fmt.Sprintf("total %d avg10 %.2f avg60 %.2f avg300 %.2f", x.Total, x.Avg10, x.Avg60, x.Avg300)
	}
	return fmt.Sprintf("some{%s} full{%s}", d(p.Some), d(p.Full))
}

func bareID(containerID string) string { return containerID[strings.Index(containerID, "://")+3:] }
