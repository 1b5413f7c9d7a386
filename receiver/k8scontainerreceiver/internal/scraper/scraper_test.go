// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadatatest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

func readJSON(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, into))
}

// The real kubelet's answers: a pod OOM-killed at every run (restart count 3, both fields
// OOMKilled), a pod whose children are OOM-killed while PID 1 lives (nothing in the status),
// and a steady pod, with the Summary the kubelet served at the same time.
func TestScrapeRealKubeletSamples(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	var summary stats.Summary
	readJSON(t, filepath.Join("..", "..", "testdata", "kubelet-v1.37.2", "stats-summary.json"), &summary)
	h.Kubelet.SetSummary(&summary)

	var oomStatus, childStatus corev1.PodStatus
	readJSON(t, filepath.Join("..", "..", "testdata", "kubelet-v1.37.2", "memhog-oom.status.json"), &oomStatus)
	readJSON(t, filepath.Join("..", "..", "testdata", "kubelet-v1.37.2", "memhog-child-oom.status.json"), &childStatus)
	oom := podtest.NewPod("memhog-oom", "0f3c2a8e-5d5e-4c1e-9d52-0a3e8c8f4b11", oomStatus.ContainerStatuses...)
	child := podtest.NewPod("memhog-child-oom", "49209e91-9438-4ff8-8fe7-8d4163da3a5d", childStatus.ContainerStatuses...)
	steady := podtest.NewPod("memhog-steady", "b5ad9300-c0fd-4569-8811-9608fbabca91", corev1.ContainerStatus{
		Name: "hog", ContainerID: "containerd://5e1d", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
	})
	h.StartWith(oom, child, steady)
	h.At(10 * time.Second)
	md := h.Scrape()
	checkGolden(t, "real-kubelet-samples", md)
	// First sight of memhog-oom: its latest termination, instance 3, was an OOM kill.
	assert.Equal(t, []string{"3=1@0s"}, oomPoints(md)[string(oom.UID)+"/hog"])
	assert.Equal(t, []string{"0=0@0s"}, oomPoints(md)[string(child.UID)+"/hog"])
	assert.Contains(t, metricNames(md, string(steady.UID), "hog"), "k8s.container.memory_limit_utilization")
	// Between restarts the kubelet leaves the pod out of the Summary: no stats, the flags stay.
	assert.NotContains(t, metricNames(md, string(oom.UID), "hog"), "container.memory.working_set")
}

// Sums that restart with each container instance (CPU time, page faults) start when the
// instance started; every other cumulative keeps one start time per series across restarts.
func TestStartTimesPerSeries(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	starts := func(md pmetric.Metrics) map[string]time.Time {
		out := map[string]time.Time{}
		ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
		for i := range ms.Len() {
			if m := ms.At(i); m.Type() == pmetric.MetricTypeSum {
				out[m.Name()] = m.Sum().DataPoints().At(0).StartTimestamp().AsTime()
			}
		}
		return out
	}
	run0, run1 := podtest.T0.Add(-time.Hour), podtest.T0.Add(time.Minute)
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", run0,
		kubelettest.Container("hog", run0, podtest.T0, kubelettest.Usage{CPUNanoSeconds: 5e9}))))
	first := starts(h.Scrape())

	h.At(2 * time.Minute)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	h.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", run0,
		kubelettest.Container("hog", run1, podtest.T0.Add(2*time.Minute), kubelettest.Usage{CPUNanoSeconds: 1e9}))))
	second := starts(h.Scrape())

	assert.Equal(t, run0.UTC(), first["container.cpu.time"].UTC())
	assert.Equal(t, run1.UTC(), second["container.cpu.time"].UTC(), "CPU time restarts with the instance")
	assert.Equal(t, run1.UTC(), second["container.memory.paging.faults"].UTC())
	require.Contains(t, second, "k8s.container.restart.count")
	assert.Equal(t, first["k8s.container.restart.count"], second["k8s.container.restart.count"],
		"the restart count is one series: its start never moves")
}

func statsFor(uid string, at time.Time) *stats.Summary {
	return kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", uid, podtest.T0,
		kubelettest.Container("hog", podtest.T0, at, kubelettest.Usage{
			CPUNanoSeconds: 1_500_000_000, NanoCores: 250_000_000,
			WorkingSet: 48 << 20, Usage: 50 << 20, RSS: 40 << 20, PageFaults: 1000, MajorPageFaults: 10,
		})))
}

// A node whose kubelet moved (a new address or port in the Node object) is found again: after a
// failed request the endpoint is looked up anew.
func TestKubeletEndpointLookedUpAgainAfterAFailure(t *testing.T) {
	moved := kubelettest.New(t)
	h := scrapertest.NewWith(t, func(c *scraper.Config) {
		c.Kubelet.Endpoint = ""
		c.Kubelet.CAFile = ""
		c.Kubelet.InsecureSkipVerify = true
	})
	h.SetKubeletPort(h.Kubelet.Endpoint())
	h.Kubelet.SetSummary(statsFor("u1", podtest.T0))
	moved.SetSummary(statsFor("u1", podtest.T0))
	h.Start()
	h.Send(watch.Added, podtest.NewPod("hog", "u1", podtest.NewLife("hog").Running(0)))

	assert.Contains(t, metricNames(h.Scrape(), "u1", "hog"), "container.memory.working_set")
	assert.Equal(t, 1, h.Kubelet.Requests())

	// The kubelet moves: the old address fails once, then the Node object is read again.
	h.Kubelet.SetStatus(http.StatusServiceUnavailable)
	h.SetKubeletPort(moved.Endpoint())
	assert.NotContains(t, metricNames(h.Scrape(), "u1", "hog"), "container.memory.working_set")
	assert.Contains(t, metricNames(h.Scrape(), "u1", "hog"), "container.memory.working_set")
	assert.Equal(t, 2, h.Kubelet.Requests())
	assert.Equal(t, 1, moved.Requests())
}

func TestKubeletFailuresCostOnlyTheStats(t *testing.T) {
	h := scrapertest.NewWith(t, func(c *scraper.Config) { c.Kubelet.Timeout = 300 * time.Millisecond })
	h.Kubelet.SetSummary(statsFor("u1", podtest.T0))
	h.Start()
	h.Send(watch.Added, podtest.NewPod("hog", "u1", podtest.NewLife("hog").Running(0)))
	md := h.Scrape()
	checkGolden(t, "kubelet-ok", md)

	failures := []struct {
		name    string
		breakIt func()
	}{
		{"500", func() { h.Kubelet.SetStatus(http.StatusInternalServerError) }},
		{"garbage", func() { h.Kubelet.SetGarbage([]byte("<html>")) }},
		{"timeout", func() { h.Kubelet.SetSummary(statsFor("u1", podtest.T0)); h.Kubelet.SetDelay(2 * time.Second) }},
	}
	for _, f := range failures {
		f.breakIt()
		for range 2 {
			md := h.Scrape()
			assert.Len(t, oomPoints(md)["u1/hog"], 1, f.name)
			names := metricNames(md, "u1", "hog")
			assert.Contains(t, names, "k8s.container.oom_killed", f.name)
			assert.Contains(t, names, "k8s.container.memory.limit.current", f.name)
			assert.NotContains(t, names, "container.memory.working_set", f.name)
		}
	}
	h.Kubelet.SetDelay(0)
	h.Kubelet.SetSummary(statsFor("u1", podtest.T0))
	assert.Contains(t, metricNames(h.Scrape(), "u1", "hog"), "container.memory.working_set")

	metadatatest.AssertEqualK8sContainerKubeletErrors(t, h.Telemetry, []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", reasonAttr(metadata.AttributeReasonStatus)))},
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", reasonAttr(metadata.AttributeReasonDecode)))},
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", reasonAttr(metadata.AttributeReasonTimeout)))},
	}, metricdatatest.IgnoreTimestamp())
	// Logged on change: one warning per kind of failure, one line when it recovers.
	assert.Equal(t, 3, h.Logs.FilterMessage("No container stats from the kubelet Summary API; termination metrics go on").Len())
	assert.Equal(t, 1, h.Logs.FilterMessage("Kubelet Summary API is answering again").Len())
}

func TestTokenRotation(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	h.Kubelet.RequireToken("token-1")
	h.Start()
	h.Scrape()
	h.Kubelet.RequireToken("token-2")
	h.WriteToken("token-2")
	h.Scrape()
	assert.Equal(t, []string{"token-1", "token-2"}, h.Kubelet.Tokens())
	_, err := h.Telemetry.GetMetric("otelcol_k8s_container_kubelet_errors")
	assert.Error(t, err, "no kubelet errors recorded")
}

func TestNodeScopeAndEndpointFromTheNode(t *testing.T) {
	h := scrapertest.NewWith(t, func(c *scraper.Config) {
		c.Kubelet.Endpoint = ""
		c.Extract.Labels = []scraper.FieldExtract{{Key: "app"}, {Key: "missing"}}
		c.Extract.Annotations = []scraper.FieldExtract{{Key: "team", TagName: "team"}}
		c.ResourceAttributes.ContainerID.Enabled = true
	})
	// The node says where its kubelet listens.
	h.SetKubeletPort(h.Kubelet.Endpoint())
	_, portText, err := net.SplitHostPort(h.Kubelet.Endpoint())
	require.NoError(t, err)
	h.Kubelet.SetSummary(statsFor("u1", podtest.T0))
	h.Start()

	lists := h.Lists()
	require.NotEmpty(t, lists)
	assert.Equal(t, "spec.nodeName="+podtest.Node, lists[0].FieldSelector)

	pod := podtest.NewPod("hog", "u1", podtest.NewLife("hog").Running(0))
	pod.Annotations = map[string]string{"team": "memory", "other": "x"}
	h.Send(watch.Added, pod)
	md := h.Scrape()
	checkGolden(t, "node-endpoint-extract", md)
	assert.Equal(t, "127.0.0.1:"+portText, scraper.Endpoint(h.Scraper))
	assert.Equal(t, 1, h.Kubelet.Requests())
}

func TestWholeClusterWithoutKubelet(t *testing.T) {
	h := scrapertest.NewWith(t, func(c *scraper.Config) {
		c.Node = ""
		c.Kubelet.Enabled = false
	})
	h.Start()
	assert.Empty(t, h.Lists()[0].FieldSelector)
	h.Send(watch.Added, podtest.NewPod("hog", "u1", podtest.NewLife("hog").Running(0)))
	md := h.Scrape()
	assert.Equal(t, 1, md.ResourceMetrics().Len())
	assert.Equal(t, 0, h.Kubelet.Requests())
}

func TestShutdownWithoutStart(t *testing.T) {
	s, err := scraper.New(receivertest.NewNopSettings(metadata.Type), scraper.NewDefaultConfig(), scraper.DefaultDeps())
	require.NoError(t, err)
	require.NoError(t, s.Shutdown(context.Background()))
	require.NoError(t, s.Shutdown(context.Background()))
}

func TestStartFailsOnAPIConnection(t *testing.T) {
	cfg := scraper.NewDefaultConfig()
	cfg.Node = podtest.Node
	s, err := scraper.New(receivertest.NewNopSettings(metadata.Type), cfg, scraper.DefaultDeps())
	require.NoError(t, err)
	// Not in a cluster: no in-cluster configuration.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	assert.ErrorContains(t, s.Start(context.Background(), componenttest.NewNopHost()), "Kubernetes API server")
	require.NoError(t, s.Shutdown(context.Background()))
}
