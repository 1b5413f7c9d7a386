// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// v2Node is a cgroup v2 node's /sys/fs/cgroup with the kubelet's cgroupfs layout: the kubepods
// cgroup and the cgroup of pod u1, whose limit hits a test sets.
type v2Node struct {
	t    *testing.T
	root string
}

func newV2Node(t *testing.T) *v2Node {
	n := &v2Node{t: t, root: t.TempDir()}
	n.write("cgroup.controllers", "cpu io memory pids\n")
	n.hits("kubepods", 0, 0)
	n.hits("kubepods/burstable", 0, 0)
	n.hits("kubepods/besteffort", 0, 0)
	n.hits("kubepods/burstable/podu1", 0, 0)
	return n
}

func (n *v2Node) write(rel, content string) {
	n.t.Helper()
	path := filepath.Join(n.root, rel)
	require.NoError(n.t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(n.t, os.WriteFile(path, []byte(content), 0o644))
}

// hits sets a cgroup's "oom" counts: its own limit's, and those of the cgroups below it.
func (n *v2Node) hits(rel string, own, below int) {
	events := "low 0\nhigh 0\nmax 0\noom %d\noom_kill 0\noom_group_kill 0\n"
	n.write(rel+"/memory.events.local", fmt.Sprintf(events, own))
	n.write(rel+"/memory.events", fmt.Sprintf(events, own+below))
}

// startWithCgroups starts a scraper with the cgroup source on a new v2Node, and a logs sink.
func startWithCgroups(t *testing.T) (*v2Node, *scrapertest.Harness, *consumertest.LogsSink) {
	node := newV2Node(t)
	h := scrapertest.NewWith(t, func(cfg *scraper.Config) {
		cfg.ProcessOOMKills = scraper.ProcessOOMKillsConfig{Source: scraper.ProcessSourceCgroup, CgroupRoot: node.root}
	})
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	return node, h, sink
}

// hogPod is pod u1 with its container hog running, and a memory limit of its own (128 Mi)
// when podLimit.
func hogPod(podLimit bool) (podtest.Life, *corev1.Pod) {
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	if podLimit {
		pod.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}}
	}
	return hog, pod
}

// TestOOMKillRecordScope: with the cgroup source, a kill record names the limit whose hit count
// rose around the kill: the container's, the pod's own, or the node's allocatable; none when
// nothing rose on cgroup v2, where every memory cgroup kill counts one.
func TestOOMKillRecordScope(t *testing.T) {
	for _, c := range []struct {
		name     string
		podLimit bool
		hit      func(*v2Node)
		want     any
		// seen is when the scrape that sees the kill runs; 0 is 32 s, a second after the end's.
		seen time.Duration
	}{
		{"a container's limit", false, func(n *v2Node) { n.hits("kubepods/burstable/podu1", 0, 1) }, "container", 0},
		{"the pod's own limit", true, func(n *v2Node) { n.hits("kubepods/burstable/podu1", 1, 0) }, "pod", 0},
		{"the pod's limit, the sum of its containers'", false, func(n *v2Node) { n.hits("kubepods/burstable/podu1", 1, 0) }, "container", 0},
		{"the node's allocatable", false, func(n *v2Node) { n.hits("kubepods", 1, 0) }, "node_allocatable", 0},
		{"no limit", false, func(*v2Node) {}, "node", 0},
		// The status shows the end within its second: the reading the scrape takes bounds it.
		{"seen in the second of the end", false, func(n *v2Node) { n.hits("kubepods/burstable/podu1", 0, 1) }, "container", 30500 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			node, h, sink := startWithCgroups(t)
			hog, pod := hogPod(c.podLimit)
			h.Send(watch.Added, pod)
			h.At(21 * time.Second)
			h.Scrape()
			c.hit(node)
			seen := c.seen
			if seen == 0 {
				seen = 32 * time.Second
			}
			h.At(seen - 100*time.Millisecond)
			h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
			h.At(seen)
			h.Scrape()
			got := scrapertest.Records(sink)
			require.Len(t, got, 1)
			scope, _ := got[0].Attributes().Get("k8s.oom.scope")
			assert.Equal(t, c.want, scope.AsRaw())
		})
	}
}

// TestOOMKillRecordWithoutAReadingBeforeTheKill: a kill that no reading precedes (the receiver
// started after it) names no scope rather than a guessed one.
func TestOOMKillRecordWithoutAReadingBeforeTheKill(t *testing.T) {
	node, h, sink := startWithCgroups(t)
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	h.At(31 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	h.At(32 * time.Second)
	h.Scrape()
	node.hits("kubepods/burstable/podu1", 0, 1)
	h.At(42 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	_, ok := got[0].Attributes().Get("k8s.oom.scope")
	assert.False(t, ok)
}

// limitHits is the point of a scrape's metric, k8s.container.memory.limit_hits or
// k8s.pod.memory.limit_hits, and whether there is one.
func limitHits(md pmetric.Metrics, name string) (int64, bool) {
	for i := range md.ResourceMetrics().Len() {
		sms := md.ResourceMetrics().At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				if m := ms.At(k); m.Name() == name {
					if m.Type() == pmetric.MetricTypeGauge {
						return m.Gauge().DataPoints().At(0).IntValue(), true
					}
					return m.Sum().DataPoints().At(0).IntValue(), true
				}
			}
		}
	}
	return 0, false
}

// TestContainerLimitHits: with the cgroup source, each running instance's limit hits are its
// cgroup's "max" count (cgroup v2), and its pod's are the pod cgroup's own.
func TestContainerLimitHits(t *testing.T) {
	node, h, _ := startWithCgroups(t)
	hog := podtest.NewLife("hog", "OOMKilled")
	h.Send(watch.Added, podtest.NewPod("hog", "u1", hog.Running(0)))
	events := "low 0\nhigh 0\nmax %d\noom 0\noom_kill 0\noom_group_kill 0\n"
	node.write("kubepods/burstable/podu1/hog-0/memory.events", fmt.Sprintf(events, 12))
	node.write("kubepods/burstable/podu1/memory.events.local", fmt.Sprintf(events, 3))
	h.At(11 * time.Second)
	md := h.Scrape()
	got, ok := limitHits(md, "k8s.container.memory.limit_hits")
	require.True(t, ok)
	assert.Equal(t, int64(12), got)
	got, ok = limitHits(md, "k8s.pod.memory.limit_hits")
	require.True(t, ok)
	assert.Equal(t, int64(3), got)
	node.write("kubepods/burstable/podu1/hog-0/memory.events", fmt.Sprintf(events, 40))
	h.At(21 * time.Second)
	got, ok = limitHits(h.Scrape(), "k8s.container.memory.limit_hits")
	require.True(t, ok)
	assert.Equal(t, int64(40), got)
}

// TestMemoryPressureStallTime: with the cgroup source on cgroup v2, each running instance's
// memory stall totals, some and full, in seconds, from its cgroup's memory.pressure; none
// without the file.
func TestMemoryPressureStallTime(t *testing.T) {
	node, h, _ := startWithCgroups(t)
	hog := podtest.NewLife("hog", "OOMKilled")
	h.Send(watch.Added, podtest.NewPod("hog", "u1", hog.Running(0)))
	node.write("kubepods/burstable/podu1/hog-0/memory.events", "max 0\noom 0\noom_kill 0\n")
	stallTimes := func(md pmetric.Metrics) map[string]float64 {
		out := map[string]float64{}
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != "container.memory.pressure.stall_time" {
						continue
					}
					for _, dp := range m.Sum().DataPoints().All() {
						kind, _ := dp.Attributes().Get("pressure.type")
						out[kind.Str()] = dp.DoubleValue()
					}
				}
			}
		}
		return out
	}
	h.At(11 * time.Second)
	assert.Empty(t, stallTimes(h.Scrape()), "no memory.pressure: PSI off")
	node.write("kubepods/burstable/podu1/hog-0/memory.pressure",
		"some avg10=1.50 avg60=0.40 avg300=0.10 total=2500000\nfull avg10=0.80 avg60=0.20 avg300=0.05 total=1250000\n")
	h.At(21 * time.Second)
	assert.Equal(t, map[string]float64{"some": 2.5, "full": 1.25}, stallTimes(h.Scrape()))
}

// TestSuggestedLimit: a kill at the container's own limit suggests that limit (or the highest
// working set read, if higher) and a quarter more; a kill at the pod's own limit suggests
// nothing for the container.
func TestSuggestedLimit(t *testing.T) {
	for _, c := range []struct {
		name     string
		podLimit bool
		hit      func(*v2Node)
		want     int64
	}{
		{"the container's limit", false, func(n *v2Node) { n.hits("kubepods/burstable/podu1", 0, 1) }, 80 << 20},
		{"the pod's limit", true, func(n *v2Node) { n.hits("kubepods/burstable/podu1", 1, 0) }, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			node, h, _ := startWithCgroups(t)
			hog, pod := hogPod(c.podLimit)
			h.Send(watch.Added, pod)
			h.At(21 * time.Second)
			_, ok := limitHits(h.Scrape(), "k8s.container.memory.limit.suggested")
			require.False(t, ok, "no kill, no suggestion")
			c.hit(node)
			h.At(31 * time.Second)
			h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
			h.At(32 * time.Second)
			got, ok := limitHits(h.Scrape(), "k8s.container.memory.limit.suggested")
			if c.want == 0 {
				assert.False(t, ok)
				return
			}
			require.True(t, ok)
			assert.Equal(t, c.want, got, "64 MiB and a quarter")
			// It stays while the container is reported.
			h.At(42 * time.Second)
			got, ok = limitHits(h.Scrape(), "k8s.container.memory.limit.suggested")
			require.True(t, ok)
			assert.Equal(t, c.want, got)
		})
	}
}
