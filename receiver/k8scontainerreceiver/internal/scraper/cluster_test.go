// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// clusterNames scrapes a container OOM kill and a system OOM kill with the given cluster_name
// and returns k8s.cluster.name of every resource of the metrics and of the records ("-" where
// it is absent), and how many resources there were.
func clusterNames(t *testing.T, name string) (metrics, logs map[string]int) {
	t.Helper()
	h := scrapertest.NewWith(t, func(cfg *scraper.Config) { cfg.ClusterName = name })
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	ew := h.WatchEvents()
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	h.At(time.Second)
	h.Scrape()

	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	ev := scrapertest.SystemOOM("e1", podtest.Node, 1, 2*time.Second, 2*time.Second, "java")
	_, err := h.Client.CoreV1().Events("default").Create(context.Background(), ev, metav1.CreateOptions{})
	require.NoError(t, err)
	ew.Send(watch.Added, ev)
	h.At(31 * time.Second)
	md := h.Scrape()

	metrics, logs = map[string]int{}, map[string]int{}
	of := func(attrs pcommon.Map) string {
		if v, ok := attrs.Get("k8s.cluster.name"); ok {
			return v.Str()
		}
		return "-"
	}
	for i := range md.ResourceMetrics().Len() {
		metrics[of(md.ResourceMetrics().At(i).Resource().Attributes())]++
	}
	for _, ld := range sink.AllLogs() {
		for i := range ld.ResourceLogs().Len() {
			logs[of(ld.ResourceLogs().At(i).Resource().Attributes())] += ld.ResourceLogs().At(i).ScopeLogs().At(0).LogRecords().Len()
		}
	}
	return metrics, logs
}

// TestClusterNameOnEverySignal: with cluster_name set, every resource the receiver emits, the
// container's and the node's, in metrics and in records, names the cluster; without it, none.
func TestClusterNameOnEverySignal(t *testing.T) {
	metrics, logs := clusterNames(t, "eu-1")
	assert.Equal(t, map[string]int{"eu-1": 2}, metrics, "the container's resource and the node's")
	assert.Equal(t, map[string]int{"eu-1": 2}, logs, "the container's kill record and the system OOM's")

	metrics, logs = clusterNames(t, "")
	assert.Equal(t, map[string]int{"-": 2}, metrics)
	assert.Equal(t, map[string]int{"-": 2}, logs)
}
