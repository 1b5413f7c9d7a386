// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

func TestOOMKillRecord(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	pod.Status.QOSClass = corev1.PodQOSBurstable
	h.Send(watch.Added, pod)
	// The working set read 20 s before the kill, while instance 0 ran.
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0,
		kubelettest.Container("hog", podtest.T0, podtest.T0.Add(10*time.Second), kubelettest.Usage{WorkingSet: 60 << 20}))))
	h.At(11 * time.Second)
	h.Scrape()
	assert.Empty(t, scrapertest.Records(sink), "no kill yet")

	h.At(31 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	h.At(32 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	r := got[0]
	assert.Equal(t, "k8s.container.oom_kill", r.EventName())
	assert.Equal(t, plog.SeverityNumberWarn, r.SeverityNumber())
	assert.Equal(t, "WARN", r.SeverityText())
	assert.Equal(t, podtest.T0.Add(30*time.Second), r.Timestamp().AsTime(), "when the instance ended")
	assert.Equal(t, podtest.T0.Add(32*time.Second), r.ObservedTimestamp().AsTime())
	assert.Equal(t, map[string]any{
		"k8s.container.restart_count":      int64(0),
		"container.id":                     "hog-0",
		"process.exit.code":                int64(137),
		"k8s.oom.main_process":             true,
		"k8s.container.start_time":         "2026-11-26T21:00:00Z",
		"k8s.container.end_time":           "2026-11-26T21:00:30Z",
		"k8s.container.memory.limit":       int64(64 << 20),
		"k8s.container.memory.request":     int64(32 << 20),
		"container.memory.working_set":     int64(60 << 20),
		"container.memory.working_set.age": 20.0,
		"k8s.pod.qos_class":                "Burstable",
		"test.resource.pod":                "hog",
		// One reading, at 94 % of the limit 20 s before the kill: too short a climb to follow.
		"k8s.container.memory.working_set.peak": int64(60 << 20),
		"k8s.oom.time_from_80_percent":          20.0,
		"k8s.oom.growth_class":                  "spike",
	}, r.Attributes().AsRaw())

	// Restarted, scraped again, relisted: the kill is not repeated.
	h.At(40 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	h.Scrape()
	h.Relist(podtest.WithStatus(pod, hog.Running(1)))
	h.At(50 * time.Second)
	h.Scrape()
	assert.Empty(t, scrapertest.Records(sink))
}

// A reading of an earlier instance does not explain the kill of a later one.
func TestOOMKillRecordWithoutAReadingOfTheKilledInstance(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	hog := podtest.NewLife("hog", "Error", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0,
		kubelettest.Container("hog", podtest.T0, podtest.T0.Add(10*time.Second), kubelettest.Usage{WorkingSet: 60 << 20}))))
	h.At(11 * time.Second)
	h.Scrape()
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(1)))
	h.At(2 * time.Minute)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1, "the Error exit is no OOM kill")
	attrs := got[0].Attributes().AsRaw()
	assert.Equal(t, int64(1), attrs["k8s.container.restart_count"])
	assert.NotContains(t, attrs, "container.memory.working_set")
	assert.NotContains(t, attrs, "container.memory.working_set.age")
}

// An OOM kill already in the status at first sight is history: no record.
func TestNoRecordForHistory(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	h.StartWith(podtest.NewPod("hog", "u1", hog.Running(1)))
	h.At(10 * time.Second)
	h.Scrape()
	assert.Empty(t, scrapertest.Records(sink))
}

// The workload names come from the pod's controller owner, on every signal, and never split a
// series: they are not among the processor's identifying attributes.
func TestWorkloadAttributes(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("web-5d8f7c9b6-x2x9z", "u1", hog.Running(0))
	pod.Labels["pod-template-hash"] = "5d8f7c9b6"
	pod.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f7c9b6", Controller: new(true)}}
	job := podtest.NewPod("nightly-29401320-abcde", "u2", podtest.NewLife("run", "OOMKilled").Running(0))
	job.OwnerReferences = []metav1.OwnerReference{{Kind: "Job", Name: "nightly-29401320", Controller: new(true)}}
	h.Send(watch.Added, pod)
	h.Send(watch.Added, job)
	md := h.Scrape()
	got := map[string]map[string]any{}
	for i := range md.ResourceMetrics().Len() {
		attrs := md.ResourceMetrics().At(i).Resource().Attributes().AsRaw()
		if uid, ok := attrs["k8s.pod.uid"].(string); ok {
			got[uid] = attrs
		}
	}
	require.Len(t, got, 2)
	assert.Equal(t, "web-5d8f7c9b6", got["u1"]["k8s.replicaset.name"])
	assert.Equal(t, "web", got["u1"]["k8s.deployment.name"])
	assert.NotContains(t, got["u1"], "k8s.job.name")
	assert.Equal(t, "nightly-29401320", got["u2"]["k8s.job.name"])
	assert.Equal(t, "nightly", got["u2"]["k8s.cronjob.name"])
	assert.NotContains(t, got["u2"], "k8s.deployment.name")
}

// The Summary goes on listing a killed instance for about a second, with what is left of its
// working set, stamped (to the second, as the kill's end is) in the second of the kill. Such a
// reading does not explain the kill: only one stamped before the kill's second does.
func TestOOMKillRecordIgnoresAReadingFromTheSecondOfTheKill(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	// Instance 0 ends at t0+30s. The first reading is from before; the second, of what was left
	// after the kill, carries the kill's second.
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0,
		kubelettest.Container("hog", podtest.T0, podtest.T0.Add(29*time.Second), kubelettest.Usage{WorkingSet: 60 << 20}))))
	h.At(29500 * time.Millisecond)
	h.Scrape()
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0,
		kubelettest.Container("hog", podtest.T0, podtest.T0.Add(30*time.Second), kubelettest.Usage{WorkingSet: 253952}))))
	h.At(30500 * time.Millisecond)
	h.Scrape()
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	h.At(31 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	attrs := got[0].Attributes().AsRaw()
	assert.Equal(t, int64(60<<20), attrs["container.memory.working_set"], "the reading from before the kill")
	assert.Equal(t, 1.0, attrs["container.memory.working_set.age"])
}

// TestOOMKillRecordTrajectory: a container whose working set climbs from half its limit to the
// limit over four minutes of scrapes: its kill record gives the peak, the growth rate, the time
// from 80 % of the limit and the class slow_growth.
func TestOOMKillRecordTrajectory(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	const limit = 64 << 20
	// A reading every 10 s from 10 s to 240 s: 32 MiB, rising 128 KiB a second.
	for at := 10 * time.Second; at <= 240*time.Second; at += 10 * time.Second {
		ws := uint64(32<<20) + uint64(at.Seconds())*(128<<10)
		h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0,
			kubelettest.Container("hog", podtest.T0, podtest.T0.Add(at), kubelettest.Usage{WorkingSet: ws}))))
		h.At(at + 500*time.Millisecond)
		h.Scrape()
	}
	require.Empty(t, scrapertest.Records(sink))
	h.At(245 * time.Second)
	killed := hog.Terminated(0)
	killed.State.Terminated.FinishedAt = metav1.NewTime(podtest.T0.Add(245 * time.Second))
	h.Send(watch.Modified, podtest.WithStatus(pod, killed))
	h.At(250 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	attrs := got[0].Attributes().AsRaw()
	assert.Equal(t, int64(32<<20+240*(128<<10)), attrs["k8s.container.memory.working_set.peak"])
	assert.InDelta(t, 128<<10, attrs["k8s.container.memory.working_set.growth_rate"], 1, "bytes per second")
	// 80 % of 64 MiB (51.2 MiB) is first read at 160 s (52 MiB), 85 s before the kill.
	assert.Equal(t, 85.0, attrs["k8s.oom.time_from_80_percent"])
	assert.Equal(t, "slow_growth", attrs["k8s.oom.growth_class"])
	assert.Equal(t, int64(limit), attrs["k8s.container.memory.limit"])
}

// The Summary API gives a container's creation as its start, the pod status the runtime's start,
// which follows by up to seconds: the kill record has the trajectory all the same.
func TestOOMKillRecordTrajectoryOfAContainerCreatedSecondsBeforeItStarted(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	created := podtest.T0.Add(-2 * time.Second)
	for _, at := range []time.Duration{10 * time.Second, 20 * time.Second} {
		h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", created,
			kubelettest.Container("hog", created, podtest.T0.Add(at), kubelettest.Usage{WorkingSet: 60 << 20}))))
		h.At(at + 500*time.Millisecond)
		h.Scrape()
	}
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	h.At(32 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	attrs := got[0].Attributes().AsRaw()
	assert.Equal(t, int64(60<<20), attrs["k8s.container.memory.working_set.peak"])
	// At 94 % from the first reading, 20 s before the kill.
	assert.Equal(t, 20.0, attrs["k8s.oom.time_from_80_percent"])
}

// An instance killed before any reading of it has no trajectory, not that of the instance
// before it, created seconds earlier.
func TestOOMKillRecordHasNoTrajectoryOfTheInstanceBefore(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	// Run 0 from 0 to 5 s, run 1 from 15 to 17 s.
	end0 := func(s corev1.ContainerStatus) corev1.ContainerStatus {
		if term := s.LastTerminationState.Terminated; term != nil {
			term.FinishedAt = metav1.NewTime(podtest.T0.Add(5 * time.Second))
		}
		return s
	}
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0,
		kubelettest.Container("hog", podtest.T0, podtest.T0.Add(2*time.Second), kubelettest.Usage{WorkingSet: 60 << 20}))))
	h.At(2500 * time.Millisecond)
	h.Scrape()
	first := hog.Terminated(0)
	first.State.Terminated.FinishedAt = metav1.NewTime(podtest.T0.Add(5 * time.Second))
	h.Send(watch.Modified, podtest.WithStatus(pod, first))
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0)))
	h.At(6 * time.Second)
	h.Scrape()
	require.Len(t, scrapertest.Records(sink), 1)

	second := end0(hog.Terminated(1))
	second.State.Terminated.StartedAt = metav1.NewTime(podtest.T0.Add(15 * time.Second))
	second.State.Terminated.FinishedAt = metav1.NewTime(podtest.T0.Add(17 * time.Second))
	h.Send(watch.Modified, podtest.WithStatus(pod, second))
	h.At(18 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	attrs := got[0].Attributes().AsRaw()
	assert.Equal(t, int64(1), attrs["k8s.container.restart_count"])
	assert.NotContains(t, attrs, "k8s.container.memory.working_set.peak")
	assert.NotContains(t, attrs, "k8s.oom.growth_class")
}
