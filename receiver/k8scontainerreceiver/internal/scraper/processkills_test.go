// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

func TestProcessKillRecord(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	pod := podtest.NewPod("hog", scrapertest.PodUID, podtest.NewLife("hog", "OOMKilled").Running(0))
	pod.Status.QOSClass = corev1.PodQOSBurstable
	h.Send(watch.Added, pod)
	h.Kubelet.SetCadvisor(scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "hog", UID: scrapertest.PodUID, Container: "hog", ID: "hog-0", Value: 7}))
	h.At(time.Second)
	h.Scrape()
	assert.Empty(t, scrapertest.Records(sink))
	h.Kubelet.SetCadvisor(scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "hog", UID: scrapertest.PodUID, Container: "hog", ID: "hog-0", Value: 10}))
	h.At(2 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	assert.Equal(t, "k8s.container.process.oom_kill", got[0].EventName())
	assert.Equal(t, podtest.T0.Add(2*time.Second), got[0].Timestamp().AsTime())
	assert.Equal(t, map[string]any{
		"k8s.container.process.oom_kill.count": int64(3),
		"container.id":                         "hog-0",
		"k8s.oom.main_process":                 false,
		"k8s.container.memory.limit":           int64(64 << 20),
		"k8s.container.memory.request":         int64(32 << 20),
		"k8s.pod.qos_class":                    "Burstable",
		"test.resource.pod":                    "hog",
	}, got[0].Attributes().AsRaw())
}

// A container whose child the OOM killer killed and whose PID 1 then exited by itself with 0, 1
// or 143: the runtime marks it OOMKilled, and the record is of a process kill that was not the
// main process, never of a container kill.
func TestProcessKillRecordWhenPID1ExitsByItself(t *testing.T) {
	for _, code := range []int32{0, 1, 143} {
		h := scrapertest.NewWith(t, nil)
		sink := new(consumertest.LogsSink)
		h.Scraper.SetLogs(sink)
		h.Start()
		life := podtest.NewLife("job", "OOMKilled")
		pod := podtest.NewPod("job", scrapertest.PodUID, life.Running(0))
		h.Send(watch.Added, pod)
		h.Kubelet.SetCadvisor(scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "job", UID: scrapertest.PodUID, Container: "job", ID: "job-0", Value: 0}))
		h.At(time.Second)
		h.Scrape()
		ended := life.Terminated(0)
		ended.State.Terminated.ExitCode = code
		h.Kubelet.SetCadvisor(scrapertest.Cadvisor())
		h.Send(watch.Modified, podtest.WithStatus(pod, ended))
		h.At(40 * time.Second)
		h.Scrape()
		got := scrapertest.Records(sink)
		require.Len(t, got, 1, "exit code %d", code)
		assert.Equal(t, "k8s.container.process.oom_kill", got[0].EventName(), "exit code %d", code)
		attrs := got[0].Attributes().AsRaw()
		assert.Equal(t, false, attrs["k8s.oom.main_process"], "exit code %d", code)
		assert.Equal(t, int64(1), attrs["k8s.container.process.oom_kill.count"], "exit code %d", code)
	}
}

// A process kill record says how the running container's memory came to the scrape that saw the
// kills: the trajectory of its readings before.
func TestProcessKillRecordTrajectory(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	pod := podtest.NewPod("hog", scrapertest.PodUID, podtest.NewLife("hog", "OOMKilled").Running(0))
	h.Send(watch.Added, pod)
	counter := func(v int) {
		h.Kubelet.SetCadvisor(scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "hog", UID: scrapertest.PodUID, Container: "hog", ID: "hog-0", Value: v}))
	}
	// Created a second before it started, as the Summary gives it; read at 10 and 20 s.
	created := podtest.T0.Add(-time.Second)
	for i, ws := range []uint64{40 << 20, 60 << 20} {
		at := time.Duration(i+1) * 10 * time.Second
		h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", scrapertest.PodUID, created,
			kubelettest.Container("hog", created, podtest.T0.Add(at), kubelettest.Usage{WorkingSet: ws}))))
		counter(0)
		h.At(at + 500*time.Millisecond)
		h.Scrape()
	}
	counter(2)
	h.At(30*time.Second + 500*time.Millisecond)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	attrs := got[0].Attributes().AsRaw()
	assert.Equal(t, false, attrs["k8s.oom.main_process"])
	assert.Equal(t, int64(60<<20), attrs["k8s.container.memory.working_set.peak"])
	assert.InDelta(t, 2<<20, attrs["k8s.container.memory.working_set.growth_rate"], 1, "20 MiB in 10 s")
}
