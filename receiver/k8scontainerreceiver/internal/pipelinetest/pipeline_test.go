// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadatatest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// pipeline is this receiver feeding the oom_counter processor with its default config, in
// process, as in a collector.
type pipeline struct {
	*scrapertest.Harness
	proc processor.Metrics
	sink *consumertest.MetricsSink
}

func newPipeline(t *testing.T, existing ...*corev1.Pod) *pipeline {
	t.Helper()
	return newPipelineWith(t, nil, existing...)
}

// newPipelineWith is newPipeline with the processor's config changed by tweak. existing pods are
// on the API server before the collector starts.
func newPipelineWith(t *testing.T, tweak func(*oomcounterprocessor.Config), existing ...*corev1.Pod) *pipeline {
	t.Helper()
	h := scrapertest.NewWith(t, nil)
	f := oomcounterprocessor.NewFactory()
	sink := new(consumertest.MetricsSink)
	cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
	if tweak != nil {
		tweak(cfg)
	}
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	h.StartWith(existing...)
	return &pipeline{Harness: h, proc: proc, sink: sink}
}

// cycle scrapes and hands the batch to the processor, or loses it when drop is set.
func (p *pipeline) cycle(at time.Duration, drop bool) {
	p.T.Helper()
	p.At(at)
	md := p.Scrape()
	if !drop {
		require.NoError(p.T, p.proc.ConsumeMetrics(context.Background(), md))
	}
}

// kills returns the latest k8s.container.oom_kills value per "pod UID/container".
func (p *pipeline) kills() map[string]int64 { return p.counter("k8s.container.oom_kills") }

// counter returns the latest value of the cumulative counter name per "pod UID/container".
func (p *pipeline) counter(metric string) map[string]int64 {
	out := map[string]int64{}
	for _, md := range p.sink.AllMetrics() {
		rms := md.ResourceMetrics()
		for i := range rms.Len() {
			attrs := rms.At(i).Resource().Attributes()
			uid, _ := attrs.Get("k8s.pod.uid")
			name, _ := attrs.Get("k8s.container.name")
			sms := rms.At(i).ScopeMetrics()
			for j := range sms.Len() {
				ms := sms.At(j).Metrics()
				for k := range ms.Len() {
					m := ms.At(k)
					if m.Name() != metric {
						continue
					}
					require.Equal(p.T, pmetric.MetricTypeSum, m.Type())
					require.True(p.T, m.Sum().IsMonotonic())
					require.Equal(p.T, pmetric.AggregationTemporalityCumulative, m.Sum().AggregationTemporality())
					dps := m.Sum().DataPoints()
					out[uid.Str()+"/"+name.Str()] = dps.At(dps.Len() - 1).IntValue()
				}
			}
		}
	}
	return out
}

func TestPipelineCountsEveryOOMKillOnce(t *testing.T) {
	p := newPipeline(t)
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "Error", "OOMKilled", "OOMKilled")
	crash := podtest.NewLife("app", "Error", "Error")
	hogPod := podtest.NewPod("hog", "u1", hog.Running(0))
	crashPod := podtest.NewPod("app", "u2", crash.Running(0))
	p.Send(watch.Added, hogPod)
	p.Send(watch.Added, crashPod)
	p.cycle(time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 0, "u2/app": 0}, p.kills())

	// Three OOM kills between two scrapes: three counts.
	for run := range 3 {
		p.At(time.Duration(2+2*run) * time.Second)
		p.Send(watch.Modified, podtest.WithStatus(hogPod, hog.Terminated(run)))
		p.At(time.Duration(3+2*run) * time.Second)
		p.Send(watch.Modified, podtest.WithStatus(hogPod, hog.Running(run+1)))
	}
	// Crashes that are no OOM kills count nothing.
	p.At(9 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(crashPod, crash.Terminated(0)))
	p.cycle(10*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 3, "u2/app": 0}, p.kills())

	// Quiet scrapes repeat the latest state: nothing more.
	p.cycle(20*time.Second, false)
	p.cycle(30*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 3, "u2/app": 0}, p.kills())

	// An Error, then an OOM kill seen in state.terminated and again in lastState after the
	// restart, and a relist repeating it: one count.
	p.At(31 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(hogPod, hog.Terminated(3)))
	p.At(32 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(hogPod, hog.Running(4)))
	p.At(33 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(hogPod, hog.Terminated(4)))
	p.cycle(40*time.Second, false)
	p.At(41 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(hogPod, hog.Running(5)))
	p.Relist(podtest.WithStatus(hogPod, hog.Running(5)), podtest.WithStatus(crashPod, crash.Terminated(0)))
	p.WaitHandled(2)
	p.cycle(50*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 4, "u2/app": 0}, p.kills())

	// The batch with the next kill is lost on the way: the next scrape's latest state still
	// carries it, and it counts once.
	p.At(51 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(hogPod, hog.Terminated(5)))
	p.cycle(60*time.Second, true)
	p.cycle(70*time.Second, false)
	p.cycle(80*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 5, "u2/app": 0}, p.kills())
}

func TestPipelineRealKubeletStatusIsNoNewOOM(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "kubelet-v1.37.2", "memhog-oom.status.json"))
	require.NoError(t, err)
	var status corev1.PodStatus
	require.NoError(t, json.Unmarshal(b, &status))
	pod := podtest.NewPod("memhog-oom", "u1", status.ContainerStatuses...)

	// A collector that starts while the container has been OOM-killed four times raises no
	// alarm: those kills are history.
	p := newPipeline(t, pod)
	p.cycle(time.Second, false)
	p.cycle(11*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 0}, p.kills())
	// The two kills the status shows (instances 2 and 3) are counted as history.
	metadatatest.AssertEqualK8sContainerOomKillsHistory(t, p.Telemetry, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())

	// The kubelet restarts it and it is OOM-killed again: one.
	next := status.ContainerStatuses[0].DeepCopy()
	next.LastTerminationState = next.State
	next.RestartCount = 4
	next.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	p.At(12 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(pod, *next))
	killed := next.DeepCopy()
	killed.State = corev1.ContainerState{Terminated: killed.LastTerminationState.Terminated.DeepCopy()}
	killed.State.Terminated.ContainerID = "containerd://the-fifth-run"
	p.At(13 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(pod, *killed))
	p.cycle(21*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 1}, p.kills())
}

// A termination first seen in the back-off form belongs to the instance the status names: two
// OOM kills that the receiver sees only in that form, one through a relist, count two.
func TestPipelineBackOffFormCountsEachKill(t *testing.T) {
	p := newPipeline(t)
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	p.Send(watch.Added, pod)
	p.cycle(time.Second, false)

	p.At(2 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(pod, hog.Backoff(0)))
	p.cycle(3*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 1}, p.kills())

	// The restart and the next kill were merged away while the watch was down: the relist
	// shows only the back-off form of instance 1.
	p.At(4 * time.Second)
	p.Relist(podtest.WithStatus(pod, hog.Backoff(1)))
	p.WaitHandled(1)
	p.cycle(5*time.Second, false)
	p.cycle(6*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 2}, p.kills())

	// The kubelet restarts it: the same termination now in lastState of instance 2.
	p.At(7 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(2)))
	p.cycle(8*time.Second, false)
	p.At(9 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(pod, hog.Backoff(2)))
	p.cycle(10*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 3}, p.kills())
}

// A node reboot resets the restart count of a pod's containers: after it, exactly the OOM kills
// that happen count, whatever was the latest state before.
func TestPipelineRestartCountResetCountsOnlyNewKills(t *testing.T) {
	p := newPipeline(t)
	before := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", before.Running(0))
	p.Send(watch.Added, pod)
	p.cycle(time.Second, false)
	step := 2 * time.Second
	advance := func(s corev1.ContainerStatus) {
		p.At(step)
		p.Send(watch.Modified, podtest.WithStatus(pod, s))
		step += time.Second
		p.cycle(step, false)
		step += time.Second
	}
	advance(before.Terminated(0))
	advance(before.Running(1))
	advance(before.Terminated(1))
	advance(before.Running(2))
	assert.Equal(t, map[string]int64{"u1/hog": 2}, p.kills())

	after := podtest.NewLife("hog", "Error", "Error", "Error", "OOMKilled").Rebooted()
	for run := range 4 {
		advance(podtest.Named(after.Running(run), "hog"))
		advance(podtest.Named(after.Terminated(run), "hog"))
	}
	advance(podtest.Named(after.Running(4), "hog"))
	p.cycle(step, false)
	assert.Equal(t, map[string]int64{"u1/hog": 3}, p.kills())
}

// Instance 2 runs; the next status the receiver sees is the back-off form of instance 4 after
// an OOM kill. Instances 2 and 3 ended unseen: lower_bound counts 1, upper_bound 3.
func TestPipelineGapPolicyBoundsUnseenEnds(t *testing.T) {
	for policy, want := range map[oomcounterprocessor.GapPolicy]int64{
		oomcounterprocessor.GapPolicyLowerBound: 1,
		oomcounterprocessor.GapPolicyUpperBound: 3,
	} {
		t.Run(string(policy), func(t *testing.T) {
			hog := podtest.NewLife("hog", "Error", "Error", "Error", "Error", "OOMKilled")
			pod := podtest.NewPod("hog", "u1", hog.Running(2))
			p := newPipelineWith(t, func(cfg *oomcounterprocessor.Config) { cfg.GapPolicy = policy }, pod)
			p.cycle(time.Second, false)
			p.At(2 * time.Second)
			p.Send(watch.Modified, podtest.WithStatus(pod, hog.Backoff(4)))
			p.cycle(3*time.Second, false)
			p.cycle(4*time.Second, false)
			assert.Equal(t, map[string]int64{"u1/hog": want}, p.kills())
		})
	}
}

// A pod created and OOM-killed while the collector watches, even while its watch is down, is
// news: its first status already shows the kill, and the kill counts. A pod that existed before
// the collector started shows history.
func TestPipelinePodCreatedWhileWatchingCountsItsKills(t *testing.T) {
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	before := podtest.NewPod("before", "u0", hog.Running(1))
	p := newPipeline(t, before)
	p.cycle(time.Second, false)

	p.At(2 * time.Second)
	p.Send(watch.Added, podtest.NewPod("fast", "u1", hog.Running(1)))
	// While the watch is down another pod is created and OOM-killed twice; the status shows
	// only the second kill (instance 0 ended unseen: unattributed).
	p.At(3 * time.Second)
	p.Relist(before, podtest.NewPod("fast", "u1", hog.Running(1)), podtest.NewPod("hidden", "u2", hog.Backoff(1)))
	p.WaitHandled(1)
	p.cycle(4*time.Second, false)
	p.cycle(5*time.Second, false)
	assert.Equal(t, map[string]int64{"u0/hog": 0, "u1/hog": 1, "u2/hog": 1}, p.kills())
}

// With storage, a collector restart is no gap: an OOM kill while the collector was down, which
// the status shows when it is back, counts once, on the same counter.
func TestPipelineKillWhileTheCollectorWasDownCountsOnce(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))

	run := func(pods []*corev1.Pod, scrapes ...time.Duration) (*pipeline, map[string]int64) {
		h := scrapertest.NewWith(t, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state })
		h.Host = host
		f := oomcounterprocessor.NewFactory()
		cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
		cfg.Storage = &state
		sink := new(consumertest.MetricsSink)
		proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
		require.NoError(t, err)
		require.NoError(t, proc.Start(context.Background(), host))
		t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
		h.At(scrapes[0] - time.Second)
		h.StartWith(pods...)
		p := &pipeline{Harness: h, proc: proc, sink: sink}
		for _, at := range scrapes {
			p.cycle(at, false)
		}
		return p, p.kills()
	}

	first, kills := run([]*corev1.Pod{pod}, time.Second)
	first.At(2 * time.Second)
	first.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	first.cycle(3*time.Second, false)
	first.At(4 * time.Second)
	first.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	first.cycle(5*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 0}, kills)
	assert.Equal(t, map[string]int64{"u1/hog": 1}, first.kills())
	require.NoError(t, first.Scraper.Shutdown(context.Background()))
	require.NoError(t, first.proc.Shutdown(context.Background()))

	// Instance 1 is OOM-killed at 1m30s while no collector runs; the restarted one finds it
	// waiting in back-off. Meanwhile another pod was created and OOM-killed at 30s: no
	// collector ever saw it, its kill is news too.
	late := podtest.NewPod("late", "u2", podtest.Named(podtest.NewLife("late", hog.Reasons...).Backoff(0), "hog")) // its own container IDs
	down := []*corev1.Pod{podtest.WithStatus(pod, hog.Backoff(1)), late}
	second, kills := run(down, 2*time.Minute, 3*time.Minute)
	assert.Equal(t, map[string]int64{"u1/hog": 2, "u2/hog": 1}, kills)
	require.NoError(t, second.Scraper.Shutdown(context.Background()))
	require.NoError(t, second.proc.Shutdown(context.Background()))

	// Another restart with nothing new counts nothing.
	_, kills = run(down, 4*time.Minute, 5*time.Minute)
	assert.Equal(t, map[string]int64{"u1/hog": 2, "u2/hog": 1}, kills)
}

// The batch with a container's first points is lost (a memory_limiter before oom_counter refuses
// it): the OOM kill the receiver then sees happen still counts, and once.
func TestPipelineFirstBatchLostKillStillCounts(t *testing.T) {
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	p := newPipeline(t, pod)
	p.cycle(time.Second, true)
	p.At(2 * time.Second)
	p.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	p.cycle(3*time.Second, false)
	p.cycle(4*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 1}, p.kills())
}

// Attributes that change with each container instance (container.id, a pod label extracted by
// the receiver) are carried to the counter but do not restart it: two OOM kills count two, on
// one start time.
func TestPipelineChangingAttributesKeepOneCounter(t *testing.T) {
	h := scrapertest.NewWith(t, func(cfg *k8scontainerreceiver.Config) {
		cfg.ResourceAttributes.ContainerID.Enabled = true
		cfg.Extract.Labels = []k8scontainerreceiver.FieldExtract{{Key: "revision"}}
	})
	f := oomcounterprocessor.NewFactory()
	sink := new(consumertest.MetricsSink)
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	h.StartWith()
	p := &pipeline{Harness: h, proc: proc, sink: sink}

	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	revision := func(run int, s corev1.ContainerStatus) *corev1.Pod {
		q := podtest.WithStatus(pod, s)
		q.Labels = map[string]string{"revision": strconv.Itoa(run)}
		return q
	}
	p.Send(watch.Added, revision(0, hog.Running(0)))
	p.cycle(time.Second, false)
	for run := range 2 {
		p.At(time.Duration(2+4*run) * time.Second)
		p.Send(watch.Modified, revision(run, hog.Terminated(run)))
		p.cycle(time.Duration(3+4*run)*time.Second, false)
		p.At(time.Duration(4+4*run) * time.Second)
		p.Send(watch.Modified, revision(run+1, hog.Running(run+1)))
		p.cycle(time.Duration(5+4*run)*time.Second, false)
	}
	assert.Equal(t, map[string]int64{"u1/hog": 2}, p.kills())
	starts := map[pcommon.Timestamp]bool{}
	ids := map[string]bool{}
	for _, md := range sink.AllMetrics() {
		rms := md.ResourceMetrics()
		for i := range rms.Len() {
			id, _ := rms.At(i).Resource().Attributes().Get("container.id")
			ms := rms.At(i).ScopeMetrics().At(0).Metrics()
			for j := range ms.Len() {
				if m := ms.At(j); m.Name() == "k8s.container.oom_kills" {
					ids[id.Str()] = true
					starts[m.Sum().DataPoints().At(0).StartTimestamp()] = true
				}
			}
		}
	}
	assert.Len(t, ids, 3, "each instance has its own container.id")
	assert.Len(t, starts, 1, "one counter: one start time")
}
