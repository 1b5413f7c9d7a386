// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

func TestProcessKillsCounted(t *testing.T) {
	p := newPipeline(t)
	hog := podtest.NewLife("hog", "OOMKilled")
	p.Send(watch.Added, podtest.NewPod("hog", scrapertest.PodUID, hog.Running(0)))
	step := func(at time.Duration, text string) map[string]int64 {
		p.Kubelet.SetCadvisor(text)
		p.cycle(at, false)
		return p.counter("k8s.container.process.oom_kills")
	}
	key := scrapertest.PodUID + "/hog"
	at := func(id string, v int) string {
		return scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "hog", UID: scrapertest.PodUID, Container: "hog", ID: id, Value: v})
	}

	assert.Equal(t, int64(0), step(time.Second, at("hog-0", 7))[key], "a counter seen for the first time is a baseline")
	assert.Equal(t, int64(2), step(2*time.Second, at("hog-0", 9))[key])
	assert.Equal(t, int64(2), step(3*time.Second, scrapertest.Cadvisor())[key], "an answer without the instance")
	assert.Equal(t, int64(2), step(4*time.Second, at("hog-0", 9))[key], "the instance back is not counted again")
	assert.Equal(t, int64(3), step(5*time.Second, at("hog-1", 1))[key], "a new instance counts from zero")
	assert.Equal(t, int64(3), step(6*time.Second, at("hog-1", 0))[key], "the kubelet restarted: its count starts again")
	assert.Equal(t, int64(5), step(7*time.Second, at("hog-1", 2))[key])
	assert.Equal(t, 7, p.Kubelet.CadvisorRequests())
}

// With storage, the kills while the collector was down are the growth of the counter since the
// last reading before it stopped; without it they would be taken as the new baseline.
func TestProcessKillsWhileTheCollectorWasDown(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	pod := podtest.NewPod("hog", scrapertest.PodUID, podtest.NewLife("hog", "OOMKilled").Running(0))
	key := scrapertest.PodUID + "/hog"

	run := func(values []int, from time.Duration) *pipeline {
		h := scrapertest.NewWith(t, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state })
		h.Host = host
		f := oomcounterprocessor.NewFactory()
		cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
		cfg.Storage = &state
		sink := new(consumertest.MetricsSink)
		proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
		require.NoError(t, err)
		require.NoError(t, proc.Start(context.Background(), host))
		h.At(from)
		h.StartWith(pod)
		p := &pipeline{Harness: h, proc: proc, sink: sink}
		for i, v := range values {
			p.Kubelet.SetCadvisor(scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "hog", UID: scrapertest.PodUID, Container: "hog", ID: "hog-0", Value: v}))
			p.cycle(from+time.Duration(i+1)*time.Second, false)
		}
		require.NoError(t, h.Scraper.Shutdown(context.Background()))
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
	dir := filepath.Join(root, "memory", "kubepods", "burstable", "pod"+scrapertest.PodUID)
	setCount := func(id string, n int) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, id), 0o755))
		body := fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)
		require.NoError(t, os.WriteFile(filepath.Join(dir, id, "memory.oom_control"), []byte(body), 0o644))
	}
	setCount("hog-0", 40)
	// The hierarchy's own root has the file too.
	require.NoError(t, os.WriteFile(filepath.Join(root, "memory", "memory.oom_control"), []byte("oom_kill 0\n"), 0o644))
	h := scrapertest.NewWith(t, func(cfg *k8scontainerreceiver.Config) {
		cfg.ProcessOOMKills = k8scontainerreceiver.ProcessOOMKillsConfig{Source: k8scontainerreceiver.ProcessSourceCgroup, CgroupRoot: root}
	})
	f := oomcounterprocessor.NewFactory()
	sink := new(consumertest.MetricsSink)
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	h.Start()
	p := &pipeline{Harness: h, proc: proc, sink: sink}
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", scrapertest.PodUID, hog.Running(0))
	p.Send(watch.Added, pod)
	key := scrapertest.PodUID + "/hog"

	p.cycle(time.Second, false)
	assert.Equal(t, int64(0), p.counter("k8s.container.process.oom_kills")[key], "the first reading is a baseline")
	setCount("hog-0", 47)
	p.cycle(2*time.Second, false)
	assert.Equal(t, int64(7), p.counter("k8s.container.process.oom_kills")[key])
	// The next instance: its cgroup is new, and counts from zero.
	p.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "hog-0")))
	setCount("hog-1", 2)
	p.cycle(3*time.Second, false)
	assert.Equal(t, int64(9), p.counter("k8s.container.process.oom_kills")[key])
	assert.Equal(t, 0, p.Kubelet.CadvisorRequests(), "the kubelet is not asked")
}
