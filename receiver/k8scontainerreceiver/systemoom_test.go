// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"strings"
	"sync"
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
)

// systemOOM is a kubelet's SystemOOM event on nodeName, aggregated count times, the latest at last.
func systemOOM(uid, nodeName string, count int32, first, last time.Duration, victim string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "default", Name: nodeName + "." + uid, UID: types.UID(uid)},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: nodeName, UID: types.UID(nodeName)},
		Reason:         "SystemOOM",
		Type:           corev1.EventTypeWarning,
		Message:        "System OOM encountered, victim process: " + victim + ", pid: 4242",
		Source:         corev1.EventSource{Component: "kubelet", Host: nodeName},
		Count:          count,
		FirstTimestamp: metav1.NewTime(podtest.T0.Add(first)),
		LastTimestamp:  metav1.NewTime(podtest.T0.Add(last)),
	}
}

// eventWatch captures the receiver's watch of events, to deliver events to it.
type eventWatch struct {
	mu       sync.Mutex
	watchers []*watch.FakeWatcher
}

func watchEvents(h *harness) *eventWatch {
	w := &eventWatch{}
	h.client.PrependWatchReactor("events", func(k8stesting.Action) (bool, watch.Interface, error) {
		fw := watch.NewFakeWithChanSize(64, false)
		w.mu.Lock()
		w.watchers = append(w.watchers, fw)
		w.mu.Unlock()
		return true, fw, nil
	})
	return w
}

func (w *eventWatch) send(t *testing.T, h *harness, kind watch.EventType, ev *corev1.Event) {
	t.Helper()
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.watchers) > 0
	}, 5*time.Second, time.Millisecond, "watching events")
	handled := h.handled["events"]
	before := handled.Load()
	w.mu.Lock()
	fw := w.watchers[len(w.watchers)-1]
	w.mu.Unlock()
	fw.Action(kind, ev)
	require.Eventually(t, func() bool { return handled.Load() > before }, 5*time.Second, time.Millisecond, "event handled")
}

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
						require.Equal(p.t, pmetric.AggregationTemporalityCumulative, m.Sum().AggregationTemporality())
						out[nodeName.Str()] = m.Sum().DataPoints().At(m.Sum().DataPoints().Len() - 1).IntValue()
					}
				}
			}
		}
	}
	return out
}

func TestSystemOOMKills(t *testing.T) {
	h := newHarness(t, nil)
	logs := new(consumertest.LogsSink)
	h.scraper.logs = logs
	ew := watchEvents(h)
	old := systemOOM("e1", podtest.Node, 2, -time.Hour, -30*time.Minute, "java")
	_, err := h.client.CoreV1().Events("default").Create(context.Background(), old, metav1.CreateOptions{})
	require.NoError(t, err)
	f := oomcounterprocessor.NewFactory()
	sink := new(consumertest.MetricsSink)
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	h.start()
	q := &pipeline{harness: h, proc: proc, sink: sink}

	q.cycle(time.Second, false)
	assert.Equal(t, map[string]int64{podtest.Node: 0}, q.systemKills(), "the kills of an event already there are history")

	old2 := old.DeepCopy()
	old2.Count, old2.LastTimestamp = 4, metav1.NewTime(podtest.T0.Add(2*time.Second))
	old2.ResourceVersion = "2"
	ew.send(t, h, watch.Modified, old2)
	ew.send(t, h, watch.Added, systemOOM("e2", podtest.Node, 1, 3*time.Second, 3*time.Second, "stress"))
	ew.send(t, h, watch.Added, systemOOM("e3", "node-b", 1, 3*time.Second, 3*time.Second, "other"))
	q.cycle(4*time.Second, false)
	assert.Equal(t, map[string]int64{podtest.Node: 3}, q.systemKills(), "the count grew by 2, and one new event")

	got := records(logs)
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
	ew.send(t, h, watch.Modified, old3)
	q.cycle(5*time.Second, false)
	assert.Equal(t, map[string]int64{podtest.Node: 3}, q.systemKills())
	assert.Empty(t, records(logs))
}

// With storage, the growth while the collector was down counts, and nothing counts twice.
func TestSystemOOMKillsWhileTheCollectorWasDown(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	run := func(events []*corev1.Event, from time.Duration, during func(*harness, *eventWatch)) *pipeline {
		h := newHarness(t, func(cfg *Config) { cfg.Storage = &state })
		h.host = host
		ew := watchEvents(h)
		for _, ev := range events {
			_, err := h.client.CoreV1().Events("default").Create(context.Background(), ev, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		f := oomcounterprocessor.NewFactory()
		cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
		cfg.Storage = &state
		sink := new(consumertest.MetricsSink)
		proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
		require.NoError(t, err)
		require.NoError(t, proc.Start(context.Background(), host))
		h.at(from)
		require.NoError(t, h.scraper.start(context.Background(), host))
		h.waitWatchers(1)
		p := &pipeline{harness: h, proc: proc, sink: sink}
		p.cycle(from+time.Second, false)
		if during != nil {
			during(h, ew)
		}
		p.cycle(from+2*time.Second, false)
		require.NoError(t, h.scraper.shutdown(context.Background()))
		require.NoError(t, proc.Shutdown(context.Background()))
		return p
	}
	e1 := systemOOM("e1", podtest.Node, 2, -time.Hour, -time.Hour, "java")
	first := run([]*corev1.Event{e1}, 0, func(h *harness, ew *eventWatch) {
		grown := e1.DeepCopy()
		grown.Count, grown.LastTimestamp, grown.ResourceVersion = 3, metav1.NewTime(podtest.T0.Add(1500*time.Millisecond)), "2"
		ew.send(t, h, watch.Modified, grown)
	})
	assert.Equal(t, map[string]int64{podtest.Node: 1}, first.systemKills())

	// While down: e1 grew by 2, e4 was created.
	e1down := systemOOM("e1", podtest.Node, 5, -time.Hour, 30*time.Second, "java")
	e4 := systemOOM("e4", podtest.Node, 1, 40*time.Second, 40*time.Second, "stress")
	second := run([]*corev1.Event{e1down, e4}, time.Minute, nil)
	assert.Equal(t, map[string]int64{podtest.Node: 4}, second.systemKills())

	// Another restart with nothing new counts nothing.
	third := run([]*corev1.Event{e1down, e4}, 2*time.Minute, nil)
	assert.Equal(t, map[string]int64{podtest.Node: 4}, third.systemKills())
}

func FuzzParseVictim(f *testing.F) {
	f.Add("System OOM encountered, victim process: java, pid: 4242")
	f.Add("System OOM encountered")
	f.Add("(combined from similar events): System OOM encountered, victim process: a, b, pid: 1")
	f.Fuzz(func(t *testing.T, msg string) {
		name, pid := parseVictim(msg)
		if len(name) > len(msg) || pid < 0 && !strings.Contains(msg, "-") {
			t.Fatalf("parseVictim(%q) = %q, %d", msg, name, pid)
		}
	})
}

func TestParseVictim(t *testing.T) {
	for msg, want := range map[string]struct {
		name string
		pid  int64
	}{
		"System OOM encountered, victim process: java, pid: 4242":                                 {"java", 4242},
		"System OOM encountered":                                                                  {"", 0},
		"(combined from similar events): System OOM encountered, victim process: stress, pid: 17": {"stress", 17},
		"System OOM encountered, victim process: kworker/0:1":                                     {"kworker/0:1", 0},
	} {
		name, pid := parseVictim(msg)
		assert.Equal(t, want.name, name, msg)
		assert.Equal(t, want.pid, pid, msg)
	}
}

// Event times have a second's precision: an event first seen after a restart, stamped in the
// second of the earlier run's last look and not among the counts it reported, counts whole.
func TestSystemOOMInTheSecondOfTheHorizon(t *testing.T) {
	o := newSystemOOMs(podtest.Node)
	o.restore(map[types.UID]int32{"known": 2}, podtest.T0.Add(459*time.Millisecond))
	o.observe(systemOOM("new", podtest.Node, 1, 0, 0, "java"), false)
	o.observe(systemOOM("known", podtest.Node, 2, -time.Minute, 0, "java"), false)
	o.observe(systemOOM("old", podtest.Node, 3, -time.Second, -time.Second, "java"), false)
	kills := 0
	o.drain(func(_ string, k []systemKill) { kills += len(k) })
	assert.Equal(t, 1, kills)
}
