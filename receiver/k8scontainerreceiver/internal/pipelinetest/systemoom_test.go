// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// systemKills returns the latest k8s.node.system_oom_kills per node.
func (p *pipeline) systemKills() map[string]int64 {
	out := map[string]int64{}
	for _, md := range p.sink.AllMetrics() {
		for i := range md.ResourceMetrics().Len() {
			rm := md.ResourceMetrics().At(i)
			nodeName, _ := rm.Resource().Attributes().Get("k8s.node.name")
			for j := range rm.ScopeMetrics().Len() {
				ms := rm.ScopeMetrics().At(j).Metrics()
				for k := range ms.Len() {
					if m := ms.At(k); m.Name() == "k8s.node.system_oom_kills" {
						require.Equal(p.T, pmetric.AggregationTemporalityCumulative, m.Sum().AggregationTemporality())
						out[nodeName.Str()] = m.Sum().DataPoints().At(m.Sum().DataPoints().Len() - 1).IntValue()
					}
				}
			}
		}
	}
	return out
}

func TestSystemOOMKills(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	logs := new(consumertest.LogsSink)
	h.Scraper.SetLogs(logs)
	ew := h.WatchEvents()
	old := scrapertest.SystemOOM("e1", podtest.Node, 2, -time.Hour, -30*time.Minute, "java")
	_, err := h.Client.CoreV1().Events("default").Create(context.Background(), old, metav1.CreateOptions{})
	require.NoError(t, err)
	f := oomcounterprocessor.NewFactory()
	sink := new(consumertest.MetricsSink)
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	h.Start()
	q := &pipeline{Harness: h, proc: proc, sink: sink}

	q.cycle(time.Second, false)
	assert.Equal(t, map[string]int64{podtest.Node: 0}, q.systemKills(), "the kills of an event already there are history")

	old2 := old.DeepCopy()
	old2.Count, old2.LastTimestamp = 4, metav1.NewTime(podtest.T0.Add(2*time.Second))
	old2.ResourceVersion = "2"
	ew.Send(watch.Modified, old2)
	ew.Send(watch.Added, scrapertest.SystemOOM("e2", podtest.Node, 1, 3*time.Second, 3*time.Second, "stress"))
	ew.Send(watch.Added, scrapertest.SystemOOM("e3", "node-b", 1, 3*time.Second, 3*time.Second, "other"))
	q.cycle(4*time.Second, false)
	assert.Equal(t, map[string]int64{podtest.Node: 3}, q.systemKills(), "the count grew by 2, and one new event")

	got := scrapertest.Records(logs)
	require.Len(t, got, 3)
	victims := map[string]int{}
	for _, r := range got {
		assert.Equal(t, "k8s.node.system_oom_kill", r.EventName())
		attrs := r.Attributes().AsRaw()
		assert.Equal(t, int64(4242), attrs["process.pid"])
		victims[attrs["process.executable.name"].(string)]++
	}
	assert.Equal(t, map[string]int{"java": 2, "stress": 1}, victims)

	// The same count again (a relist, a resync) is nothing new.
	old3 := old2.DeepCopy()
	old3.ResourceVersion = "3"
	ew.Send(watch.Modified, old3)
	q.cycle(5*time.Second, false)
	assert.Equal(t, map[string]int64{podtest.Node: 3}, q.systemKills())
	assert.Empty(t, scrapertest.Records(logs))
}

// With storage, the growth while the collector was down counts, and nothing counts twice.
func TestSystemOOMKillsWhileTheCollectorWasDown(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	run := func(events []*corev1.Event, from time.Duration, during func(*scrapertest.Harness, *scrapertest.EventWatch)) *pipeline {
		h := scrapertest.NewWith(t, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state })
		h.Host = host
		ew := h.WatchEvents()
		for _, ev := range events {
			_, err := h.Client.CoreV1().Events("default").Create(context.Background(), ev, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		f := oomcounterprocessor.NewFactory()
		cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
		cfg.Storage = &state
		sink := new(consumertest.MetricsSink)
		proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
		require.NoError(t, err)
		require.NoError(t, proc.Start(context.Background(), host))
		h.At(from)
		require.NoError(t, h.Scraper.Start(context.Background(), host))
		h.WaitWatchers(1)
		p := &pipeline{Harness: h, proc: proc, sink: sink}
		p.cycle(from+time.Second, false)
		if during != nil {
			during(h, ew)
		}
		p.cycle(from+2*time.Second, false)
		require.NoError(t, h.Scraper.Shutdown(context.Background()))
		require.NoError(t, proc.Shutdown(context.Background()))
		return p
	}
	e1 := scrapertest.SystemOOM("e1", podtest.Node, 2, -time.Hour, -time.Hour, "java")
	first := run([]*corev1.Event{e1}, 0, func(h *scrapertest.Harness, ew *scrapertest.EventWatch) {
		grown := e1.DeepCopy()
		grown.Count, grown.LastTimestamp, grown.ResourceVersion = 3, metav1.NewTime(podtest.T0.Add(1500*time.Millisecond)), "2"
		ew.Send(watch.Modified, grown)
	})
	assert.Equal(t, map[string]int64{podtest.Node: 1}, first.systemKills())

	// While down: e1 grew by 2, e4 was created.
	e1down := scrapertest.SystemOOM("e1", podtest.Node, 5, -time.Hour, 30*time.Second, "java")
	e4 := scrapertest.SystemOOM("e4", podtest.Node, 1, 40*time.Second, 40*time.Second, "stress")
	second := run([]*corev1.Event{e1down, e4}, time.Minute, nil)
	assert.Equal(t, map[string]int64{podtest.Node: 4}, second.systemKills())

	// Another restart with nothing new counts nothing.
	third := run([]*corev1.Event{e1down, e4}, 2*time.Minute, nil)
	assert.Equal(t, map[string]int64{podtest.Node: 4}, third.systemKills())
}
