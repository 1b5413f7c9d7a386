// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
	"github.com/oomwatch/oomwatch/internal/testing/promserver"
)

// The kill sources beside the pod status, on the real node, as a user checks them: processes the
// OOM killer ends inside a living container (the kubelet's cAdvisor counter), the record of each
// container the OOM killer ended, and system OOM kills of the node (the kubelet's SystemOOM
// events). Each collector here also runs the logs pipeline that deploy/ ships, so the OTLP
// backend gets the records beside the counters.

// Prometheus names of the oom_counter outputs: the prometheus exporter adds _total to a
// monotonic sum, and a unit in braces adds nothing.
const (
	promProcessOOMKills = "k8s_container_process_oom_kills_total"
	promSystemOOMKills  = "k8s_node_system_oom_kills_total"
)

// logsPipeline is the logs pipeline of deploy/config.yaml, without the memory limiter:
// the records of the receiver, batched, to the OTLP backend.
const logsPipeline = `    logs:
      receivers: [k8s_container]
      processors: [batch]
      exporters: [otlp_grpc]
`

// startLogsAgent starts a collector as startAgent does, with the logs pipeline beside the
// metrics one.
func startLogsAgent(t *testing.T, opts agentOptions) *agent {
	t.Helper()
	opts.logs = true
	return startAgent(t, opts)
}

// latestOf is the latest point of a metric for a container, and whether there is one.
func (a *agent) latestOf(metric, podUID, container string) (otlpsink.Point, bool) {
	return a.sink.Latest(metric, map[string]string{"k8s.pod.uid": podUID, "k8s.container.name": container})
}

// intAttr reads an int attribute of a record; the test fails if it is missing or not an int.
func intAttr(t *testing.T, r otlpsink.Record, name string) int64 {
	t.Helper()
	v, ok := r.Attrs[name]
	require.Truef(t, ok, "record %s has no %s: %v", r.EventName, name, r.Attrs)
	n, err := strconv.ParseInt(v, 10, 64)
	require.NoError(t, err, "%s=%q", name, v)
	return n
}

// bytesOf is a quantity in bytes.
func bytesOf(q string) int64 {
	v := resource.MustParse(q)
	return v.Value()
}

// TestRealNodeProcessKillsCountedExactly: PID 1 of a container lives while five of its children
// are OOM-killed, one every 2 s or so, well within the kernel's OOM report budget (10 in 5 s
// host-wide), so the kernel reports every kill and the kubelet's cAdvisor counts each. A user
// asks Prometheus: k8s.container.process.oom_kills of the container equals the kernel's own
// count (oom_kill of the container's memory cgroup), exactly, and stays there;
// k8s.container.oom_kills stays 0, since the container never ended. The OTLP backend's
// k8s.container.process.oom_kill records add up to the same number.
func TestRealNodeProcessKillsCountedExactly(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-proc-exact")
	const children = 5
	const limit = "64Mi"
	klog := followKernelLog(t)
	promPort := freePort(t)
	a := startLogsAgent(t, agentOptions{node: s.realNode, name: "proc", prometheus: promPort})
	prom := startPrometheus(t, fmt.Sprintf("127.0.0.1:%d", promPort))
	// Any earlier test's window of the kernel's report rate limit is over: this test's first
	// kill opens one of its own.
	awaitOOMReportWindow()

	pod := createPod(t, ns, "children", s.realNode, corev1.RestartPolicyNever, nil,
		workload("app", limit, map[string]string{"WORKLOAD_MODE": "child-oom", "WORKLOAD_CHILDREN": strconv.Itoa(children)}))
	uid := string(pod.UID)
	st := runningContainer(t, ns, "children", "app", 60*time.Second)
	id := st.ContainerID
	created := time.Now()

	// The kernel counts every kill as it happens.
	var kernelDone time.Time
	require.Eventuallyf(t, func() bool {
		n, err := readKernelOOMKills(uid, id)
		if err == nil && n >= children {
			kernelDone = time.Now()
			return true
		}
		return false
	}, 60*time.Second, 20*time.Millisecond, "the kernel did not OOM-kill %d children", children)
	t.Logf("the kernel counted %d kills %s after the container ran", children, kernelDone.Sub(created).Round(time.Millisecond))

	// The collector reaches the kernel's count, and one full scrape later still shows it.
	kernel := kernelOOMKills(t, uid, id)
	var reached otlpsink.Point
	require.Eventuallyf(t, func() bool {
		p, ok := a.latestOf("k8s.container.process.oom_kills", uid, "app")
		reached = p
		return ok && p.Value >= float64(kernel)
	}, scrapes(2), 50*time.Millisecond, "k8s.container.process.oom_kills did not reach the kernel's %d; last point %+v", kernel, &reached)
	t.Logf("the OTLP backend got k8s.container.process.oom_kills %v %s after the kernel's oom_kill reached %d",
		reached.Value, reached.Received.Sub(kernelDone).Round(time.Millisecond), kernel)
	settled := a.waitReports(uid, "app", time.Now(), 2)
	sel := fmt.Sprintf(`%s{k8s_pod_uid=%q,k8s_container_name="app"}`, promProcessOOMKills, uid)
	prom.SampleAfter(sel, settled.Received, scrapes(1)+promScrapeInterval)

	// Read at the same moment: the kernel, cAdvisor, the backend and Prometheus.
	kernel = kernelOOMKills(t, uid, id)
	cadvisor, _, listed := cadvisorOOMEventsOf(cadvisorOOMEvents(t), id)
	exported, ok := a.latestOf("k8s.container.process.oom_kills", uid, "app")
	require.True(t, ok)
	got, err := prom.One(sel)
	require.NoError(t, err)
	reports := klog.oomSummaries(id)
	t.Logf("kernel oom_kill %d, kernel reports of the container %d, cadvisor %d (listed: %v), OTLP backend %v, Prometheus %s = %v",
		kernel, len(reports), cadvisor, listed, exported.Value, sel, got.Value)
	// The premise: every kill was reported, so the kubelet could count it.
	require.Lenf(t, reports, int(kernel), "the kernel's rate limit left out OOM reports (other OOM kills on the host?): not a test of the collector")

	assert.Equal(t, uint64(children), kernel, "every child OOM-killed, PID 1 never")
	assert.Equal(t, float64(kernel), exported.Value, "k8s.container.process.oom_kills at the OTLP backend is not the kernel's count")
	assert.Equal(t, float64(kernel), got.Value, "%s is not the kernel's count", sel)
	resets, err := prom.One(fmt.Sprintf("resets(%s[5m])", sel))
	require.NoError(t, err)
	assert.Zero(t, resets.Value, "Prometheus saw the counter go down")

	// The container never ended: no OOM kill of the container.
	ends := fmt.Sprintf(`%s{k8s_pod_uid=%q,k8s_container_name="app"}`, promOOMKills, uid)
	containerKills, err := prom.One(ends)
	require.NoError(t, err)
	assert.Zero(t, containerKills.Value, "%s: PID 1 never died", ends)
	now := runningContainer(t, ns, "children", "app", time.Second)
	assert.Equal(t, id, now.ContainerID)
	assert.Zero(t, now.RestartCount)

	// The records add up to the kernel's count, each about the running instance.
	records := a.sink.Records("k8s.container.process.oom_kill", map[string]string{"k8s.pod.uid": uid, "k8s.container.name": "app"})
	var sum int64
	var counts []int64
	for _, r := range records {
		n := intAttr(t, r, "k8s.container.process.oom_kill.count")
		sum += n
		counts = append(counts, n)
		assert.Equal(t, bareContainerID(id), r.Attrs["container.id"])
		assert.Equal(t, bytesOf(limit), intAttr(t, r, "k8s.container.memory.limit"))
		assert.Equal(t, int32(plog.SeverityNumberWarn), r.SeverityNumber, "severity")
	}
	t.Logf("%d k8s.container.process.oom_kill records, counts %v", len(records), counts)
	assert.Equal(t, int64(kernel), sum, "the records' k8s.container.process.oom_kill.count do not add up to the kernel's count")
	assert.Empty(t, a.sink.Records("k8s.container.oom_kill", map[string]string{"k8s.pod.uid": uid}), "a container OOM kill record for a container that never ended")
	t.Logf("test time after the container ran: %s", time.Since(created).Round(time.Millisecond))
}

// instanceEnd is the end of one container instance as the API server showed it.
type instanceEnd struct {
	index int32
	term  corev1.ContainerStateTerminated
}

// instanceEnds watches a pod and keeps, by container ID, every termination of a container the
// API server shows, with the instance's 0-based index: the status' restart count when the
// termination is in state.terminated, or in lastState under the status' own container ID (the
// back-off form), else the restart count minus one (the next instance runs).
type instanceEnds struct {
	mu   sync.Mutex
	ends map[string]instanceEnd
}

func watchInstanceEnds(t *testing.T, ns, pod, container string) *instanceEnds {
	t.Helper()
	s := need(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := s.admin.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", pod).String(),
	})
	require.NoError(t, err)
	e := &instanceEnds{ends: map[string]instanceEnd{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			st, err := status(p, container)
			if err != nil {
				continue
			}
			e.mu.Lock()
			if term := st.State.Terminated; term != nil && term.ContainerID != "" {
				e.ends[term.ContainerID] = instanceEnd{index: st.RestartCount, term: *term}
			}
			if term := st.LastTerminationState.Terminated; term != nil && term.ContainerID != "" {
				index := st.RestartCount - 1
				if term.ContainerID == st.ContainerID {
					index = st.RestartCount
				}
				if _, seen := e.ends[term.ContainerID]; !seen {
					e.ends[term.ContainerID] = instanceEnd{index: index, term: *term}
				}
			}
			e.mu.Unlock()
		}
	}()
	return e
}

// snapshot returns the ends seen so far, by container ID.
func (e *instanceEnds) snapshot() map[string]instanceEnd {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]instanceEnd, len(e.ends))
	for k, v := range e.ends {
		out[k] = v
	}
	return out
}

// checkOOMKillRecords checks that the records are exactly one per instance end of want, with
// what the API server showed of it.
func checkOOMKillRecords(t *testing.T, who string, records []otlpsink.Record, want map[string]instanceEnd, limit int64) {
	t.Helper()
	byID := map[string][]otlpsink.Record{}
	for _, r := range records {
		byID[r.Attrs["container.id"]] = append(byID[r.Attrs["container.id"]], r)
	}
	for cid, end := range want {
		got := byID[bareContainerID(cid)]
		if !assert.Lenf(t, got, 1, "%s: k8s.container.oom_kill records of instance %d (%.12s)", who, end.index, bareContainerID(cid)) {
			continue
		}
		r := got[0]
		assert.Equal(t, int64(end.index), intAttr(t, r, "k8s.container.restart_count"), "%s: restart index of %.12s", who, bareContainerID(cid))
		assert.Equal(t, int64(137), intAttr(t, r, "process.exit.code"), "%s: exit code", who)
		assert.Equal(t, limit, intAttr(t, r, "k8s.container.memory.limit"), "%s: memory limit", who)
		assert.Equal(t, end.term.StartedAt.UTC().Format(time.RFC3339), r.Attrs["k8s.container.start_time"], "%s: start time", who)
		assert.Equal(t, end.term.FinishedAt.UTC().Format(time.RFC3339), r.Attrs["k8s.container.end_time"], "%s: end time", who)
		assert.True(t, end.term.FinishedAt.Time.Equal(r.Time), "%s: the record's time %s is not the end %s", who, r.Time, end.term.FinishedAt)
		t.Logf("%s: instance %d (%.12s) ended %s: record at %s, received %s later; working set %s B (%s s before the end), QoS %s",
			who, end.index, bareContainerID(cid), end.term.FinishedAt.Format("15:04:05"), r.Time.Format("15:04:05"),
			r.Received.Sub(end.term.FinishedAt.Time).Round(time.Millisecond),
			r.Attrs["container.memory.working_set"], r.Attrs["container.memory.working_set.age"], r.Attrs["k8s.pod.qos_class"])
	}
	for id, rs := range byID {
		found := false
		for cid := range want {
			found = found || bareContainerID(cid) == id
		}
		assert.Truef(t, found, "%s: %d k8s.container.oom_kill record(s) for an instance that is not a kill to report (%.12s): %+v", who, len(rs), id, rs)
	}
}

// TestRealNodeOOMKillRecords: a container the kernel OOM-kills (PID 1), restarted by the kubelet,
// twice. The collector that watched from the start sends exactly one k8s.container.oom_kill
// record per kill the API server shows, with the instance's restart index, container ID, exit
// code 137, the container's memory limit in bytes and the instance's start and end; the
// record's time is the end. A collector started after the first kill takes it as history: no
// record of it, and one of the second. The container leaks slowly (64 MiB in about 6 s): the
// kubelet may restart it at once, and the second collector must see the first kill before the
// second one comes.
func TestRealNodeOOMKillRecords(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-records")
	const kills = 2
	began := time.Now()
	a := startLogsAgent(t, agentOptions{node: s.realNode, name: "from-start"})
	pod := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil,
		workload("app", "64Mi", map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_INTERVAL": "400ms"}))
	uid := string(pod.UID)
	ends := watchInstanceEnds(t, ns, "leaky", "app")
	oomEnds := func() map[string]instanceEnd {
		out := map[string]instanceEnd{}
		for id, e := range ends.snapshot() {
			if e.term.Reason == "OOMKilled" {
				out[id] = e
			}
		}
		return out
	}

	require.Eventually(t, func() bool { return len(oomEnds()) >= 1 }, 90*time.Second, 50*time.Millisecond, "no OOM kill in the pod status")
	history := oomEnds()
	late := startLogsAgent(t, agentOptions{node: s.realNode, name: "after-first"})
	late.waitOOMs(uid, "app", 0, scrapes(1))
	require.Len(t, oomEnds(), 1, "the second kill came before the second collector first saw the container: nothing to tell history from news")
	t.Logf("the second collector first saw the container %s after the first kill", time.Since(history[latestEnd(history)].term.FinishedAt.Time).Round(time.Second))

	require.Eventually(t, func() bool { return len(oomEnds()) >= kills }, 90*time.Second, 50*time.Millisecond, "OOM kill %d not in the pod status", kills)
	a.waitOOMs(uid, "app", kills, reportLag+slack)
	late.waitOOMs(uid, "app", 1, reportLag+slack)
	// One more full scrape of each: a repeated record would be there.
	now := time.Now()
	a.waitReports(uid, "app", now, 2)
	late.waitReports(uid, "app", now, 2)

	want := oomEnds()
	all := ends.snapshot()
	p := waitStatus(t, ns, "leaky", time.Second, func(*corev1.Pod) bool { return true })
	st, err := status(p, "app")
	require.NoError(t, err)
	t.Logf("the API server shows restart count %d; instance ends seen: %d, OOM kills %d", st.RestartCount, len(all), len(want))
	require.Len(t, want, len(all), "an instance ended otherwise than by the OOM killer")
	// The next instance needs about 6 s to leak to its limit, after a back-off of 10 s or not.
	require.Len(t, want, kills, "a third kill before the check")
	indexes := []int{}
	for _, e := range want {
		indexes = append(indexes, int(e.index))
	}
	sort.Ints(indexes)
	require.Equal(t, []int{0, 1}, indexes, "the restart indexes of the killed instances")

	match := map[string]string{"k8s.pod.uid": uid, "k8s.container.name": "app"}
	checkOOMKillRecords(t, "from the start", a.sink.Records("k8s.container.oom_kill", match), want, bytesOf("64Mi"))
	news := map[string]instanceEnd{}
	for id, e := range want {
		if _, old := history[id]; !old {
			news[id] = e
		}
	}
	checkOOMKillRecords(t, "started after the first kill", late.sink.Records("k8s.container.oom_kill", match), news, bytesOf("64Mi"))
	for _, r := range a.sink.Records("k8s.container.oom_kill", map[string]string{"k8s.pod.uid": uid}) {
		assert.Equal(t, "leaky", r.Resource["k8s.pod.name"])
		assert.Equal(t, ns, r.Resource["k8s.namespace.name"])
		assert.Equal(t, s.realNode, r.Resource["k8s.node.name"])
		assert.Equal(t, int32(plog.SeverityNumberWarn), r.SeverityNumber, "severity")
	}
	// The killed process was PID 1 each time. Its instance's counter shows the kill until the
	// cgroup goes, so a scrape in between may report it as a process kill too (the receiver's
	// README says the two counters are not to be added): at most one per killed instance, and
	// none for an instance that was not killed.
	perInstance := map[string]int64{}
	for _, r := range a.sink.Records("k8s.container.process.oom_kill", map[string]string{"k8s.pod.uid": uid}) {
		perInstance[r.Attrs["container.id"]] += intAttr(t, r, "k8s.container.process.oom_kill.count")
	}
	for id, n := range perInstance {
		killed := false
		for cid := range want {
			killed = killed || bareContainerID(cid) == id
		}
		assert.Truef(t, killed, "process kill records for %.12s, an instance that was not OOM-killed", id)
		assert.LessOrEqualf(t, n, int64(1), "process kills reported for %.12s, whose only kill was PID 1's", id)
	}
	t.Logf("PID 1 kills also seen as process kills, before the instance's cgroup went: %d of %d", len(perInstance), len(want))
	t.Logf("test time: %s", time.Since(began).Round(time.Millisecond))
}

// latestEnd is the container ID of the instance that ended last.
func latestEnd(ends map[string]instanceEnd) string {
	latest := ""
	for id, e := range ends {
		if latest == "" || e.index > ends[latest].index {
			latest = id
		}
	}
	return latest
}

// systemOOMVictim is the message of the kubelet's SystemOOM event.
func systemOOMVictim(name string, pid int) string {
	return fmt.Sprintf("System OOM encountered, victim process: %s, pid: %d", name, pid)
}

// nodeEvent is an event about a node as the kubelet's recorder writes it: in the default
// namespace, about the Node (whose UID the kubelet gives as the node's name), from the kubelet
// of that node, once so far.
func nodeEvent(node, reason, message string, at time.Time) *corev1.Event {
	ts := metav1.NewTime(at)
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", node, at.UnixNano()),
			Namespace: metav1.NamespaceDefault,
		},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node)},
		Reason:         reason,
		Message:        message,
		Source:         corev1.EventSource{Component: "kubelet", Host: node},
		FirstTimestamp: ts,
		LastTimestamp:  ts,
		Count:          1,
		Type:           corev1.EventTypeWarning,
	}
}

// TestSystemOOMEventsCounted: the kubelet records a system OOM kill of its node as a SystemOOM
// Warning event on the Node, and aggregates a repeat into the same event by raising its count. A
// real system OOM would kill processes of the test machine, so the test writes the events the
// kubelet would for the real node. One event (1 kill), the same aggregated (count 3), a second
// event (1): Prometheus shows k8s.node.system_oom_kills of the node at 1, 3, then 4, and the
// OTLP backend gets one k8s.node.system_oom_kill record per kill with the victim's name and PID.
// An event of another node and one with another reason on this node count nothing. Then the
// collector (with file_storage) stops; while it is down the first event is aggregated again
// (count 5) and a third event comes: after the restart the count is 4 + 2 + 1 = 7, nothing
// counted twice, and Prometheus saw no reset.
func TestSystemOOMEventsCounted(t *testing.T) {
	s := need(t)
	began := time.Now()
	node := s.realNode
	promPort := freePort(t)
	a := startLogsAgent(t, agentOptions{node: node, name: "system-oom", storage: true, prometheus: promPort})
	prom := startPrometheus(t, fmt.Sprintf("127.0.0.1:%d", promPort))
	sel := fmt.Sprintf(`%s{k8s_node_name=%q}`, promSystemOOMKills, node)
	// The collector reports the node at every scrape, 0 included.
	prom.SampleAfter(sel, began, scrapes(2)+promScrapeInterval)
	base, err := prom.One(sel)
	require.NoError(t, err)
	require.Zero(t, base.Value, "system OOM kills of the node before the test wrote any")

	events := s.admin.CoreV1().Events(metav1.NamespaceDefault)
	ctx := context.Background()
	var created []string
	t.Cleanup(func() {
		for _, name := range created {
			_ = events.Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	create := func(ev *corev1.Event) *corev1.Event {
		t.Helper()
		out, err := events.Create(ctx, ev, metav1.CreateOptions{})
		require.NoError(t, err)
		created = append(created, out.Name)
		return out
	}
	aggregate := func(ev *corev1.Event, count int32) *corev1.Event {
		t.Helper()
		ev.Count = count
		ev.LastTimestamp = metav1.NewTime(time.Now())
		out, err := events.Update(ctx, ev, metav1.UpdateOptions{})
		require.NoError(t, err)
		return out
	}
	// waitCount waits until Prometheus shows want, then for two more reports to the OTLP
	// backend, and checks that they and Prometheus, once it scraped them, still show want.
	waitCount := func(want float64, what string) {
		t.Helper()
		wrote := time.Now()
		p := prom.WaitFor(sel, scrapes(2)+promScrapeInterval, func(s promserver.Sample) bool { return s.Value >= want })
		t.Logf("%s: Prometheus shows %v, %s after the write", what, p.Value, time.Since(wrote).Round(time.Millisecond))
		var last otlpsink.Point
		seen := time.Now()
		require.Eventually(t, func() bool {
			n := 0
			for _, p := range a.sink.Points("k8s.node.system_oom_kills", map[string]string{"k8s.node.name": node}) {
				if p.Received.After(seen) {
					n++
					last = p
				}
			}
			return n >= 2
		}, scrapes(2), 50*time.Millisecond, "%s: no reports of the node", what)
		assert.Equal(t, want, last.Value, "%s: k8s.node.system_oom_kills at the OTLP backend", what)
		got := prom.SampleAfter(sel, last.Received, scrapes(1)+promScrapeInterval)
		assert.Equal(t, want, got.Value, "%s: %s", what, sel)
	}

	first := create(nodeEvent(node, "SystemOOM", systemOOMVictim("stress-ng", 4242), time.Now()))
	// Neither counts: an event of another node, one of this node with another reason (the
	// node-problem-detector's OOMKilling, about a cgroup OOM kill).
	create(nodeEvent(standinNode, "SystemOOM", systemOOMVictim("elsewhere", 99), time.Now()))
	create(nodeEvent(node, "OOMKilling", "Memory cgroup out of memory: Killed process 77 (app) total-vm:1kB", time.Now()))
	waitCount(1, "one SystemOOM event")

	first = aggregate(first, 3)
	waitCount(3, "the event aggregated to count 3")

	second := create(nodeEvent(node, "SystemOOM", systemOOMVictim("postgres", 31337), time.Now()))
	waitCount(4, "a second SystemOOM event")

	all, err := prom.Instant(promSystemOOMKills)
	require.NoError(t, err)
	require.Len(t, all, 1, "series of %s: %v", promSystemOOMKills, all)
	assert.Equal(t, node, all[0].Labels["k8s_node_name"], "a node's kills counted for another")

	type victim struct {
		name string
		pid  string
		at   time.Time
	}
	victims := func() []victim {
		var out []victim
		for _, r := range a.sink.Records("k8s.node.system_oom_kill", nil) {
			assert.Equal(t, node, r.Resource["k8s.node.name"], "a record of another node")
			assert.Equal(t, int32(plog.SeverityNumberWarn), r.SeverityNumber, "severity")
			out = append(out, victim{r.Attrs["process.executable.name"], r.Attrs["process.pid"], r.Time.UTC()})
		}
		return out
	}
	// A record's time is the event's last time when the collector saw it: the first one's was
	// its first time, the aggregated ones' the time of the aggregation.
	at := func(ev *corev1.Event) time.Time { return ev.LastTimestamp.UTC() }
	want := []victim{
		{"stress-ng", "4242", first.FirstTimestamp.UTC()},
		{"stress-ng", "4242", at(first)},
		{"stress-ng", "4242", at(first)},
		{"postgres", "31337", at(second)},
	}
	got := victims()
	require.Len(t, got, len(want), "k8s.node.system_oom_kill records: %+v", got)
	assert.Equal(t, want, got, "k8s.node.system_oom_kill records")

	// Down: the first event is aggregated again, and a new one comes. Both were written more
	// than a second after the collector last looked: event times have a second's precision.
	require.NoError(t, a.stop())
	stopped := time.Now()
	time.Sleep(1100 * time.Millisecond)
	first = aggregate(first, 5)
	third := create(nodeEvent(node, "SystemOOM", systemOOMVictim("java", 1001), time.Now()))
	a.start()
	restarted := time.Now()
	t.Logf("collector down for %s", restarted.Sub(stopped).Round(time.Millisecond))
	waitCount(7, "after the restart: 2 aggregated and 1 new while down")

	got = victims()
	want = append(want,
		victim{"stress-ng", "4242", at(first)},
		victim{"stress-ng", "4242", at(first)},
		victim{"java", "1001", at(third)})
	if assert.Len(t, got, len(want), "k8s.node.system_oom_kill records: %+v", got) {
		// The order of two events in one scrape is not given.
		after := got[4:]
		sort.Slice(after, func(i, j int) bool { return after[i].name > after[j].name })
		assert.Equal(t, want, got, "k8s.node.system_oom_kill records")
	}
	resets, err := prom.One(fmt.Sprintf("resets(%s[5m])", sel))
	require.NoError(t, err)
	assert.Zero(t, resets.Value, "Prometheus saw the counter go down across the restart")
	series, err := prom.SeriesOf(sel, began, time.Now())
	require.NoError(t, err)
	assert.Len(t, series, 1, "series of the node over the run: %v", series)
	t.Logf("test time: %s", time.Since(began).Round(time.Millisecond))
}

// summaryReading is one working set the Summary API showed for a container instance.
type summaryReading struct {
	at    time.Time // when the kubelet took it (second precision)
	bytes uint64
}

func (r summaryReading) String() string {
	return fmt.Sprintf("%d B at %s", r.bytes, r.at.UTC().Format("15:04:05"))
}

// instanceKey names a container instance in the Summary API: its pod and start time.
type instanceKey struct {
	pod   string
	start time.Time
}

// pollWorkingSets polls the real node's Summary API every 100 ms until the test ends and keeps,
// for the containers of the pods of a namespace, every change of the working set, by instance.
func pollWorkingSets(t *testing.T, ns string) func() map[instanceKey][]summaryReading {
	t.Helper()
	k, err := kubeletMetrics()
	require.NoError(t, err)
	var mu sync.Mutex
	readings := map[instanceKey][]summaryReading{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var sum v1alpha1.Summary
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/stats/summary", http.NoBody)
			if err != nil {
				return
			}
			if resp, err := k.hc.Do(req); err == nil {
				err = json.NewDecoder(resp.Body).Decode(&sum)
				_ = resp.Body.Close()
				if err == nil {
					mu.Lock()
					for _, p := range sum.Pods {
						if p.PodRef.Namespace != ns {
							continue
						}
						for _, c := range p.Containers {
							if c.Memory == nil || c.Memory.WorkingSetBytes == nil {
								continue
							}
							key := instanceKey{p.PodRef.UID, c.StartTime.Time}
							r := summaryReading{at: c.Memory.Time.Time, bytes: *c.Memory.WorkingSetBytes}
							if rs := readings[key]; len(rs) == 0 || rs[len(rs)-1] != r {
								readings[key] = append(rs, r)
							}
						}
					}
					mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return func() map[instanceKey][]summaryReading {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[instanceKey][]summaryReading, len(readings))
		for k, v := range readings {
			out[k] = append([]summaryReading(nil), v...)
		}
		return out
	}
}

// leftAfterKill returns the readings of a killed instance that show what was left of it after
// the kill: stamped in the second of its end or later, and down to less than leftAfterKillBytes
// (a leaking instance holds tens of MiB until the kill; the remains are a quarter MiB, then 0).
func leftAfterKill(rs []summaryReading, end time.Time) []summaryReading {
	var out []summaryReading
	for _, r := range rs {
		if !r.at.Before(end) && r.bytes < leftAfterKillBytes {
			out = append(out, r)
		}
	}
	return out
}

const leftAfterKillBytes = 2 << 20

// TestRealNodeOOMKillRecordWorkingSetIsBeforeTheKill: the container.memory.working_set of a
// k8s.container.oom_kill record is documented as the last working set the receiver read for the
// killed instance before the kill. After an OOM kill the Summary API keeps listing the dead
// instance for about a second, its working set down to a quarter MiB, then 0, and stamped with
// the second of the kill; the pod status' end time has a second's precision too. Eight leaking
// pods are OOM-killed twice each (or more) while the test polls the Summary API itself: every
// record's working set must be a reading from before the second of the kill, and larger than
// what the Summary showed was left of that instance after it. A scrape falls between a kill and
// the end of its second for about one kill in ten here. The containers leak slowly (64 MiB in
// about 6 s), so the collector reads each instance while it runs: each kill waited for has a
// record with a working set to check.
func TestRealNodeOOMKillRecordWorkingSetIsBeforeTheKill(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-ws")
	const pods, killsEach = 8, 2
	began := time.Now()
	a := startLogsAgent(t, agentOptions{node: s.realNode, name: "ws"})
	readings := pollWorkingSets(t, ns)
	var uids []string
	for i := range pods {
		// Staggered, so the kills fall at different moments of the collector's scrape cycle.
		time.Sleep(time.Duration(min(i, 1)) * 500 * time.Millisecond)
		pod := createPod(t, ns, fmt.Sprintf("leaky-%d", i), s.realNode, corev1.RestartPolicyAlways, nil,
			workload("app", "64Mi", map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_INTERVAL": "400ms"}))
		uids = append(uids, string(pod.UID))
	}
	records := func(uid string) []otlpsink.Record {
		return a.sink.Records("k8s.container.oom_kill", map[string]string{"k8s.pod.uid": uid})
	}
	hasWorkingSet := func(r otlpsink.Record) bool {
		_, ok := r.Attrs["container.memory.working_set"]
		return ok
	}
	// lacking lists the pods with fewer records carrying a working set than the kills waited for.
	lacking := func() []string {
		var out []string
		for _, uid := range uids {
			rs := records(uid)
			with := 0
			for _, r := range rs {
				if hasWorkingSet(r) {
					with++
				}
			}
			if with < killsEach {
				out = append(out, fmt.Sprintf("%.8s: %d k8s.container.oom_kill records, %d with a working set", uid, len(rs), with))
			}
		}
		return out
	}
	assert.Eventually(t, func() bool { return len(lacking()) == 0 }, 2*time.Minute, 100*time.Millisecond, "records with a working set for the kills waited for")
	require.Emptyf(t, lacking(), "pods without a record carrying a working set for each of the %d kills waited for", killsEach)
	// One more scrape: the Summary's readings of what was left of the last instances killed
	// are in.
	a.waitReports(uids[0], "app", time.Now(), 2)

	all := readings()
	checked, compared, wrong := 0, 0, 0
	for _, uid := range uids {
		for _, r := range records(uid) {
			if !hasWorkingSet(r) {
				t.Logf("instance %s of %s: no working set in the record", r.Attrs["k8s.container.restart_count"], uid)
				continue
			}
			checked++
			bytes, err := strconv.ParseUint(r.Attrs["container.memory.working_set"], 10, 64)
			require.NoError(t, err)
			// The Summary's start time of an instance may differ from the status' by a
			// second; the instances of a pod start six seconds apart or more.
			started, err := time.Parse(time.RFC3339Nano, r.Attrs["k8s.container.start_time"])
			require.NoError(t, err)
			var instance []summaryReading
			for k, rs := range all {
				if d := k.start.Sub(started); k.pod == uid && d <= 1500*time.Millisecond && d >= -1500*time.Millisecond {
					require.Nil(t, instance, "two instances of %s started about %s", uid, started)
					instance = rs
				}
			}
			if instance == nil {
				var seen []string
				for k, rs := range all {
					if k.pod == uid {
						seen = append(seen, fmt.Sprintf("started %s: %v", k.start.UTC().Format("15:04:05"), rs))
					}
				}
				t.Logf("the Summary API never showed the instance of %s started at %s; it showed %v", uid, started, seen)
			}
			end, err := time.Parse(time.RFC3339Nano, r.Attrs["k8s.container.end_time"])
			require.NoError(t, err)
			age, err := strconv.ParseFloat(r.Attrs["container.memory.working_set.age"], 64)
			require.NoError(t, err)
			assert.GreaterOrEqual(t, age, 1.0, "instance %s of %s: the reading is from the second of the kill", r.Attrs["k8s.container.restart_count"], uid)
			after := leftAfterKill(instance, end)
			t.Logf("instance %s of %.8s: record working set %d B, age %s s, end %s; the Summary after the kill: %v",
				r.Attrs["k8s.container.restart_count"], uid, bytes, r.Attrs["container.memory.working_set.age"], r.Attrs["k8s.container.end_time"], after)
			if len(after) == 0 {
				// Nothing to compare with: the poll saw nothing of the instance after its
				// kill. The age above is checked all the same.
				continue
			}
			compared++
			bound := uint64(0)
			for _, x := range after {
				bound = max(bound, x.bytes)
			}
			if !assert.Greaterf(t, bytes, bound, "instance %s of %s: the record's working set is a reading taken after the kill", r.Attrs["k8s.container.restart_count"], uid) {
				wrong++
			}
		}
	}
	t.Logf("%d records with a working set, %d compared with what the Summary showed after the kill, %d of them a reading after the kill; test time %s",
		checked, compared, wrong, time.Since(began).Round(time.Millisecond))
	require.Positivef(t, compared, "none of the %d records with a working set could be compared with what the Summary showed of its instance after the kill", checked)
}

// TestSystemOOMInTheSecondOfTheLastScrapeCounted: a system OOM kill in the same second as, but
// after, the collector's last scrape before it stops. The kubelet's event about it arrives when
// no scrape will report it, and its first timestamp has a second's precision: it reads as the
// second of that scrape. After the restart (with file_storage) the kill must count: no collector
// reported it.
func TestSystemOOMInTheSecondOfTheLastScrapeCounted(t *testing.T) {
	s := need(t)
	node := s.realNode
	a := startLogsAgent(t, agentOptions{node: node, kubelet: "off", name: "last-second", storage: true})
	match := map[string]string{"k8s.node.name": node}
	// Stop right after a scrape was reported: that scrape is the last look.
	since := time.Now()
	require.Eventually(t, func() bool {
		for _, p := range a.sink.Points("k8s.node.system_oom_kills", match) {
			if p.Received.After(since) {
				return true
			}
		}
		return false
	}, scrapes(1), 10*time.Millisecond, "no report of the node")
	require.NoError(t, a.stop())
	last, ok := a.sink.Latest("k8s.node.system_oom_kills", match)
	require.True(t, ok)
	require.Zero(t, last.Value)
	t.Logf("last scrape before the stop at %s", last.Time.UTC().Format("15:04:05.000"))

	// The kill came after that scrape, in its second.
	ev := nodeEvent(node, "SystemOOM", systemOOMVictim("redis-server", 2024), last.Time)
	created, err := s.admin.CoreV1().Events(metav1.NamespaceDefault).Create(context.Background(), ev, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = s.admin.CoreV1().Events(metav1.NamespaceDefault).Delete(context.Background(), created.Name, metav1.DeleteOptions{})
	})
	a.start()
	restarted := time.Now()
	p := a.waitNodeReports(match, restarted, 2)
	assert.Equal(t, 1.0, p.Value, "k8s.node.system_oom_kills after the restart: the kill while down is missed")
	// The record goes through the logs pipeline, batched apart from the metrics: it may arrive
	// after them.
	assert.Eventually(t, func() bool {
		return len(a.sink.Records("k8s.node.system_oom_kill", map[string]string{"process.pid": "2024"})) == 1
	}, scrapes(1), 50*time.Millisecond, "one record of the kill while down")
}

// waitNodeReports waits until n batches of k8s.node.system_oom_kills points of the matching
// resource arrived after since, and returns the latest point.
func (a *agent) waitNodeReports(match map[string]string, since time.Time, n int) otlpsink.Point {
	a.t.Helper()
	var latest otlpsink.Point
	require.Eventuallyf(a.t, func() bool {
		batches := map[time.Time]bool{}
		for _, p := range a.sink.Points("k8s.node.system_oom_kills", match) {
			if p.Received.After(since) {
				batches[p.Received] = true
				latest = p
			}
		}
		return len(batches) >= n
	}, scrapes(n), 50*time.Millisecond, "%v: %d reports after %s not received", match, n, since.Format("15:04:05.000"))
	return latest
}
