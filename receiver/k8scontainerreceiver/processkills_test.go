// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
)

// cadvisorCounter is one container instance's container_oom_events_total.
type cadvisorCounter struct {
	pod, uid, container, id string
	value                   int
}

// cadvisorText is /metrics/cadvisor as a kubelet writes it, with the pod-level and sandbox
// cgroups it also lists.
func cadvisorText(counters ...cadvisorCounter) string {
	var b strings.Builder
	b.WriteString("# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n# TYPE container_cpu_usage_seconds_total counter\n")
	b.WriteString("container_cpu_usage_seconds_total{container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 12.5 1795728467449\n")
	b.WriteString("# HELP container_oom_events_total Count of out of memory events observed for the container\n# TYPE container_oom_events_total counter\n")
	for _, c := range counters {
		pod := "/kubepods/burstable/pod" + c.uid
		fmt.Fprintf(&b, "container_oom_events_total{container=\"\",id=%q,image=\"\",name=\"\",namespace=%q,pod=%q} 0 1795728467449\n", pod, podtest.Namespace, c.pod)
		fmt.Fprintf(&b, "container_oom_events_total{container=%q,id=%q,image=\"memhog:v1\",name=%q,namespace=%q,pod=%q} %d 1795728467449\n",
			c.container, pod+"/"+c.id, c.id, podtest.Namespace, c.pod, c.value)
	}
	return b.String()
}

// A pod UID as the kubelet's cgroup paths hold it.
const hogUID = "49209e91-9438-4ff8-8fe7-8d4163da3a5d"

func TestProcessKillsCounted(t *testing.T) {
	p := newPipeline(t)
	hog := podtest.NewLife("hog", "OOMKilled")
	p.send(watch.Added, podtest.NewPod("hog", hogUID, hog.Running(0)))
	step := func(at time.Duration, text string) map[string]int64 {
		p.kubelet.SetCadvisor(text)
		p.cycle(at, false)
		return p.counter("k8s.container.process.oom_kills")
	}
	key := hogUID + "/hog"
	at := func(id string, v int) string { return cadvisorText(cadvisorCounter{"hog", hogUID, "hog", id, v}) }

	assert.Equal(t, int64(0), step(time.Second, at("hog-0", 7))[key], "a counter seen for the first time is a baseline")
	assert.Equal(t, int64(2), step(2*time.Second, at("hog-0", 9))[key])
	assert.Equal(t, int64(2), step(3*time.Second, cadvisorText())[key], "an answer without the instance")
	assert.Equal(t, int64(2), step(4*time.Second, at("hog-0", 9))[key], "the instance back is not counted again")
	assert.Equal(t, int64(3), step(5*time.Second, at("hog-1", 1))[key], "a new instance counts from zero")
	assert.Equal(t, int64(3), step(6*time.Second, at("hog-1", 0))[key], "the kubelet restarted: its count starts again")
	assert.Equal(t, int64(5), step(7*time.Second, at("hog-1", 2))[key])
	assert.Equal(t, 7, p.kubelet.CadvisorRequests())
}

func TestProcessKillRecord(t *testing.T) {
	h := newHarness(t, nil)
	sink := new(consumertest.LogsSink)
	h.scraper.logs = sink
	h.start()
	pod := podtest.NewPod("hog", hogUID, podtest.NewLife("hog", "OOMKilled").Running(0))
	pod.Status.QOSClass = corev1.PodQOSBurstable
	h.send(watch.Added, pod)
	h.kubelet.SetCadvisor(cadvisorText(cadvisorCounter{"hog", hogUID, "hog", "hog-0", 7}))
	h.at(time.Second)
	h.scrape()
	assert.Empty(t, records(sink))
	h.kubelet.SetCadvisor(cadvisorText(cadvisorCounter{"hog", hogUID, "hog", "hog-0", 10}))
	h.at(2 * time.Second)
	h.scrape()
	got := records(sink)
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

// With storage, the kills while the collector was down are the growth of the counter since the
// last reading before it stopped; without it they would be taken as the new baseline.
func TestProcessKillsWhileTheCollectorWasDown(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	pod := podtest.NewPod("hog", hogUID, podtest.NewLife("hog", "OOMKilled").Running(0))
	key := hogUID + "/hog"

	run := func(values []int, from time.Duration) *pipeline {
		h := newHarness(t, func(cfg *Config) { cfg.Storage = &state })
		h.host = host
		f := oomcounterprocessor.NewFactory()
		cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
		cfg.Storage = &state
		sink := new(consumertest.MetricsSink)
		proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
		require.NoError(t, err)
		require.NoError(t, proc.Start(context.Background(), host))
		h.at(from)
		h.startWith(pod)
		p := &pipeline{harness: h, proc: proc, sink: sink}
		for i, v := range values {
			p.kubelet.SetCadvisor(cadvisorText(cadvisorCounter{"hog", hogUID, "hog", "hog-0", v}))
			p.cycle(from+time.Duration(i+1)*time.Second, false)
		}
		require.NoError(t, h.scraper.shutdown(context.Background()))
		require.NoError(t, proc.Shutdown(context.Background()))
		return p
	}
	first := run([]int{7, 8}, 0)
	assert.Equal(t, int64(1), first.counter("k8s.container.process.oom_kills")[key])
	second := run([]int{10, 10}, time.Minute)
	assert.Equal(t, int64(3), second.counter("k8s.container.process.oom_kills")[key], "the two kills while down count")
}

// With process_oom_kills.source cgroup, the counts are the kernel's own, read from the host's
// cgroup filesystem (here a cgroup v1 tree as the kubelet's cgroupfs driver lays it out).
func TestProcessKillsFromCgroups(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "memory", "kubepods", "burstable", "pod"+hogUID)
	setCount := func(id string, n int) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, id), 0o755))
		body := fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)
		require.NoError(t, os.WriteFile(filepath.Join(dir, id, "memory.oom_control"), []byte(body), 0o644))
	}
	setCount("hog-0", 40)
	// The hierarchy's own root has the file too.
	require.NoError(t, os.WriteFile(filepath.Join(root, "memory", "memory.oom_control"), []byte("oom_kill 0\n"), 0o644))
	h := newHarness(t, func(cfg *Config) {
		cfg.ProcessOOMKills = ProcessOOMKillsConfig{Source: ProcessSourceCgroup, CgroupRoot: root}
	})
	f := oomcounterprocessor.NewFactory()
	sink := new(consumertest.MetricsSink)
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	h.start()
	p := &pipeline{harness: h, proc: proc, sink: sink}
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", hogUID, hog.Running(0))
	p.send(watch.Added, pod)
	key := hogUID + "/hog"

	p.cycle(time.Second, false)
	assert.Equal(t, int64(0), p.counter("k8s.container.process.oom_kills")[key], "the first reading is a baseline")
	setCount("hog-0", 47)
	p.cycle(2*time.Second, false)
	assert.Equal(t, int64(7), p.counter("k8s.container.process.oom_kills")[key])
	// The next instance: its cgroup is new, and counts from zero.
	p.send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "hog-0")))
	setCount("hog-1", 2)
	p.cycle(3*time.Second, false)
	assert.Equal(t, int64(9), p.counter("k8s.container.process.oom_kills")[key])
	assert.Equal(t, 0, p.kubelet.CadvisorRequests(), "the kubelet is not asked")
}
