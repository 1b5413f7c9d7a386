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
		"k8s.container.memory.limit":           int64(64 << 20),
		"k8s.container.memory.request":         int64(32 << 20),
		"k8s.pod.qos_class":                    "Burstable",
		"test.resource.pod":                    "hog",
	}, got[0].Attributes().AsRaw())
}
