// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// A static pod's container restarts, and the kubelet deletes its mirror pod and creates it
// again before the next scrape: the deleted mirror pod waits to report the restart, the new one
// is there too, both show the static pod's container. The process kills of the scrape go out
// once, not on each of them.
func TestProcessKillsOnceWhenTheMirrorPodWasCreatedAgain(t *testing.T) {
	const static = "3c8b2b4de5f94a34b1a8f2f7c6d9e0a1"
	etcd := podtest.NewLife("etcd", "Error")
	h := scrapertest.NewWith(t, nil)
	old := podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-1", etcd.Running(0)), static)
	h.StartWith(old)
	counter := func(id string, v int) string {
		return scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "etcd-node-a", UID: static, Container: "etcd", ID: id, Value: v})
	}
	h.Kubelet.SetCadvisor(counter("etcd-0", 0))
	h.At(time.Second)
	h.Scrape()

	h.At(2 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(old, etcd.Running(1)))
	h.Send(watch.Deleted, podtest.WithStatus(old, etcd.Running(1)))
	h.Send(watch.Added, podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-2", etcd.Running(1)), static))
	h.Kubelet.SetCadvisor(counter("etcd-1", 2))
	h.At(3 * time.Second)
	md := h.Scrape()

	total := int64(0)
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		ms := rms.At(i).ScopeMetrics().At(0).Metrics()
		for j := range ms.Len() {
			if m := ms.At(j); m.Name() == "k8s.container.process.oom_killed" {
				assert.Equal(t, pmetric.MetricTypeSum, m.Type())
				for k := range m.Sum().DataPoints().Len() {
					total += m.Sum().DataPoints().At(k).IntValue()
				}
			}
		}
	}
	assert.Equal(t, int64(2), total, "the two kills of the new instance, once")
}
