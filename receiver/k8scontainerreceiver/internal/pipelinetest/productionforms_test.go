// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

// The forms a production node writes through the kubelet's status manager, its event recorder
// and its static pods, each through the receiver and the processor, checked on the counters the
// processor exports.

// newPipelineOf is a pipeline whose receiver and processor configs tweaks change, on host (nil:
// a host without extensions); its receiver is not started.
func newPipelineOf(t *testing.T, host component.Host, receiver func(*k8scontainerreceiver.Config), processor func(*oomcounterprocessor.Config)) *pipeline {
	t.Helper()
	if host == nil {
		host = componenttest.NewNopHost()
	}
	h := scrapertest.NewWith(t, receiver)
	h.Host = host
	f := oomcounterprocessor.NewFactory()
	cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
	if processor != nil {
		processor(cfg)
	}
	sink := new(consumertest.MetricsSink)
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), host))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	return &pipeline{Harness: h, proc: proc, sink: sink}
}

func gapPolicy(policy string) func(*oomcounterprocessor.Config) {
	return func(cfg *oomcounterprocessor.Config) { cfg.GapPolicy = oomcounterprocessor.GapPolicy(policy) }
}

// A SystemOOM event the recorder creates again after it expired: same name, new UID, its count
// going on from the recorder's memory (25 + 1), the old first timestamp. One kill, one record,
// whether the informer sees the deletion and the new event or, across a watch gap, an update
// from the old UID to the new one.
func TestEventCreatedAgainAfterItExpired(t *testing.T) {
	for _, gap := range []bool{false, true} {
		t.Run(fmt.Sprintf("watch gap %v", gap), func(t *testing.T) {
			p := newPipelineOf(t, nil, nil, nil)
			logs := new(consumertest.LogsSink)
			p.Scraper.SetLogs(logs)
			ew := p.WatchEvents()
			old := scrapertest.SystemOOM("old", podtest.Node, 25, -3*time.Hour, -2*time.Hour, "java")
			_, err := p.Client.CoreV1().Events("default").Create(context.Background(), old, metav1.CreateOptions{})
			require.NoError(t, err)
			p.Start()
			p.cycle(time.Second, false)
			require.Equal(t, map[string]int64{podtest.Node: 0}, p.systemKills())

			again := old.DeepCopy()
			again.UID, again.Count, again.ResourceVersion = "new", 26, "9"
			again.LastTimestamp = metav1.NewTime(podtest.T0.Add(2 * time.Second))
			again.CreationTimestamp = metav1.NewTime(podtest.T0.Add(2 * time.Second))
			if gap {
				ew.Send(watch.Modified, again)
			} else {
				ew.Send(watch.Deleted, old)
				ew.Send(watch.Added, again)
			}
			p.cycle(3*time.Second, false)
			assert.Equal(t, map[string]int64{podtest.Node: 1}, p.systemKills())
			assert.Len(t, scrapertest.Records(logs), 1)
		})
	}
}

// A static pod's mirror pod is deleted and the kubelet creates it again, with a new UID and the
// static pod's cached status: an OOM kill months ago, restart count 1. No kill, no record.
func TestMirrorPodCreatedAgain(t *testing.T) {
	etcd := podtest.NewLife("etcd", "OOMKilled")
	old := podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-1", etcd.Running(1)), staticUID)
	p := newPipelineOf(t, nil, nil, nil)
	logs := new(consumertest.LogsSink)
	p.Scraper.SetLogs(logs)
	p.StartWith(old)
	p.cycle(time.Second, false)
	p.Send(watch.Deleted, old)
	again := podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-2", etcd.Running(1)), staticUID)
	// The API server drops a status on create; the kubelet writes it next.
	p.Send(watch.Added, podtest.WithStatus(again))
	p.Send(watch.Modified, again)
	p.cycle(2*time.Second, false)
	p.cycle(3*time.Second, false)
	assert.Equal(t, map[string]int64{"mirror-1/etcd": 0, "mirror-2/etcd": 0}, p.kills())
	assert.Empty(t, scrapertest.Records(logs))
}

// The collector restarts with storage; while it was down the static pod's container was
// OOM-killed, which counts on the mirror pod. Then the mirror pod is deleted and the kubelet
// creates it again: its status shows that same kill, counted already. No second kill, no second
// record.
func TestMirrorPodCreatedAgainAfterARestart(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	withStorage := func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state }
	etcd := podtest.NewLife("etcd", "OOMKilled", "OOMKilled")
	old := podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-1", etcd.Running(1)), staticUID)

	first := newPipelineOf(t, host, withStorage, func(cfg *oomcounterprocessor.Config) { cfg.Storage = &state })
	first.At(time.Minute + 10*time.Second)
	first.StartWith(old)
	first.cycle(time.Minute+11*time.Second, false)
	require.NoError(t, first.Scraper.Shutdown(context.Background()))

	// Instance 1 ended at 1m30s, while no collector ran.
	p := newPipelineOf(t, host, withStorage, func(cfg *oomcounterprocessor.Config) { cfg.Storage = &state })
	logs := new(consumertest.LogsSink)
	p.Scraper.SetLogs(logs)
	p.At(3 * time.Minute)
	old = podtest.WithStatus(old, etcd.Running(2))
	p.StartWith(old)
	p.cycle(3*time.Minute+time.Second, false)
	require.Equal(t, map[string]int64{"mirror-1/etcd": 1}, p.kills(), "the kill while the collector was down")

	p.Send(watch.Deleted, old)
	again := podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-2", etcd.Running(2)), staticUID)
	p.Send(watch.Added, podtest.WithStatus(again))
	p.Send(watch.Modified, again)
	p.cycle(3*time.Minute+2*time.Second, false)
	p.cycle(3*time.Minute+3*time.Second, false)
	assert.Equal(t, map[string]int64{"mirror-1/etcd": 1, "mirror-2/etcd": 0}, p.kills())
	assert.Len(t, scrapertest.Records(logs), 1)
}

// A pod waiting in back-off after an OOM kill is evicted: the status manager writes a made-up
// termination over the waiting state. The count stays 1 under either gap policy, and no
// instance is reported unseen.
func TestEvictedInBackOff(t *testing.T) {
	for _, policy := range []string{"lower_bound", "upper_bound"} {
		t.Run(policy, func(t *testing.T) {
			hog := podtest.NewLife("hog", "Error", "Error", "Error", "Error", "Error", "OOMKilled")
			pod := podtest.NewPod("hog", "u1", hog.Running(5))
			p := newPipelineOf(t, nil, nil, gapPolicy(policy))
			p.StartWith(pod)
			p.cycle(time.Second, false)
			for i, st := range []corev1.ContainerStatus{hog.Terminated(5), hog.Backoff(5), hog.EndedByKubelet(5)} {
				p.Send(watch.Modified, podtest.WithStatus(pod, st))
				p.cycle(time.Duration(2+i)*time.Second, false)
			}
			assert.Equal(t, map[string]int64{"u1/hog": 1}, p.kills())
			assert.Zero(t, telemetrySum(t, p.Harness, "otelcol_k8s_container_terminations_unseen"))
		})
	}
}

// The runtime lost a running container and the kubelet made up its end, raising the restart
// count; then the node rebooted with its logs gone, a new container ran at restart count 0 and
// the status manager made up its end too. Two instances ended, neither's outcome known: under
// upper_bound both count, under lower_bound neither.
func TestMadeUpEndAfterARestartCountReset(t *testing.T) {
	for policy, want := range map[string]int64{"lower_bound": 0, "upper_bound": 2} {
		t.Run(policy, func(t *testing.T) {
			hog := podtest.NewLife("hog")
			pod := podtest.NewPod("hog", "u1", hog.Running(0))
			p := newPipelineOf(t, nil, nil, gapPolicy(policy))
			p.StartWith(pod)
			p.cycle(time.Second, false)
			lost := hog.LostAlone(0)
			p.Send(watch.Modified, podtest.WithStatus(pod, lost))
			p.cycle(2*time.Second, false)
			again := podtest.Named(podtest.NewLife("hog-after-reboot").RunningAlone(0), "hog")
			p.Send(watch.Modified, podtest.WithStatus(pod, again))
			p.cycle(3*time.Second, false)
			ended := podtest.EndedByKubelet(again)
			p.Send(watch.Modified, podtest.WithStatus(pod, ended))
			p.cycle(4*time.Second, false)
			assert.Equal(t, map[string]int64{"u1/hog": want}, p.kills())
		})
	}
}

// The runtime lost the containers (node rebooted, runtime state wiped): the kubelet writes its
// default status with the old restart count and lastState and no container ID; the next
// container comes back at 4. Instance 3 ended unseen: the upper bound is 1, the lower 0.
func TestRuntimeLostTheContainers(t *testing.T) {
	for policy, want := range map[string]int64{"lower_bound": 0, "upper_bound": 1} {
		t.Run(policy, func(t *testing.T) {
			hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "OOMKilled")
			pod := podtest.NewPod("hog", "u1", hog.Running(3))
			p := newPipelineOf(t, nil, nil, gapPolicy(policy))
			p.StartWith(pod)
			p.cycle(time.Second, false)
			p.Send(watch.Modified, podtest.WithStatus(pod, hog.RuntimeLost(3)))
			p.cycle(2*time.Second, false)
			p.Send(watch.Modified, podtest.WithStatus(pod, hog.RunningAlone(4)))
			p.cycle(3*time.Second, false)
			assert.Equal(t, map[string]int64{"u1/hog": want}, p.kills())
		})
	}
}

// The collector restarts with storage. It last saw instance 2 running; while it was down
// instances 2 and 3 were both OOM-killed, and the status shows only the end of 3. Instance 3
// counts; instance 2 ended unseen: the bounds bracket the truth, 2.
func TestKilledTwiceWhileTheCollectorWasDown(t *testing.T) {
	for policy, want := range map[string]int64{"lower_bound": 1, "upper_bound": 2} {
		t.Run(policy, func(t *testing.T) {
			host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
			state := storagetest.NewStorageID("state")
			hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "OOMKilled")
			run := func(status corev1.ContainerStatus, at time.Duration) *pipeline {
				p := newPipelineOf(t, host, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state }, func(cfg *oomcounterprocessor.Config) {
					cfg.Storage = &state
					gapPolicy(policy)(cfg)
				})
				p.At(at)
				p.StartWith(podtest.NewPod("hog", "u1", status))
				p.cycle(at+time.Second, false)
				require.NoError(t, p.Scraper.Shutdown(context.Background()))
				require.NoError(t, p.proc.Shutdown(context.Background()))
				return p
			}
			first := run(hog.Running(2), 2*time.Minute+5*time.Second)
			assert.Equal(t, map[string]int64{"u1/hog": 0}, first.kills())
			second := run(hog.Running(4), 5*time.Minute)
			assert.Equal(t, map[string]int64{"u1/hog": want}, second.kills())
		})
	}
}

// A collector with new storage records when it started, then stops before its first scrape. An
// OOM kill in the second it started (the status keeps end times to the second) may have been
// shown when it listed its pods, history, or may have come after: the next run takes it as
// history, a bracketed miss rather than a kill counted that happened before.
func TestKilledInTheSecondTheCollectorStarted(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	hog := podtest.NewLife("hog", "Error", "OOMKilled")
	run := func(status corev1.ContainerStatus, at time.Duration, scrape bool) *pipeline {
		p := newPipelineOf(t, host, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state }, func(cfg *oomcounterprocessor.Config) { cfg.Storage = &state })
		p.At(at)
		p.StartWith(podtest.NewPod("hog", "u1", status))
		if scrape {
			p.cycle(at+time.Second, false)
		}
		require.NoError(t, p.Scraper.Shutdown(context.Background()))
		require.NoError(t, p.proc.Shutdown(context.Background()))
		return p
	}
	// Instance 1 ends at 1m30s to the second.
	run(hog.Running(1), time.Minute+30*time.Second+200*time.Millisecond, false)
	second := run(hog.Terminated(1), 3*time.Minute, true)
	assert.Equal(t, map[string]int64{"u1/hog": 0}, second.kills())
	assert.Equal(t, int64(1), telemetrySum(t, second.Harness, "otelcol_k8s_container_oom_kills_history"))
}

// The collector last looked after instance 3 was OOM-killed but before any status it saw showed
// it (status writes merged, a watch down); it had reported ends up to instance 1. The restarted
// collector first sees the kubelet's default status over the back-off after 3: lastState ended
// instance 2 or 3, it cannot tell which, but the earlier run reported neither. A kill, and its
// record.
func TestDefaultStatusOfAnEndNotReportedBeforeARestart(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	hog := podtest.NewLife("hog", "Error", "Error", "Error", "OOMKilled")
	run := func(status corev1.ContainerStatus, at, scrapeAt time.Duration) (*pipeline, *consumertest.LogsSink) {
		p := newPipelineOf(t, host, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state }, func(cfg *oomcounterprocessor.Config) { cfg.Storage = &state })
		logs := new(consumertest.LogsSink)
		p.Scraper.SetLogs(logs)
		p.At(at)
		p.StartWith(podtest.NewPod("hog", "u1", status))
		p.cycle(scrapeAt, false)
		require.NoError(t, p.Scraper.Shutdown(context.Background()))
		require.NoError(t, p.proc.Shutdown(context.Background()))
		return p, logs
	}
	// Instance 3 ends at 3m30s; the first run last looks at 4m.
	run(hog.Running(2), 2*time.Minute+40*time.Second, 4*time.Minute)
	second, logs := run(hog.BackoffLost(3), 5*time.Minute, 5*time.Minute+time.Second)
	assert.Equal(t, map[string]int64{"u1/hog": 1}, second.kills())
	assert.Len(t, scrapertest.Records(logs), 1)
}

// cgroupTree is a cgroup v1 memory hierarchy as the kubelet's cgroupfs driver lays it out.
type cgroupTree struct {
	t    *testing.T
	root string
}

func newCgroupTree(t *testing.T) cgroupTree {
	root := t.TempDir()
	// The hierarchy's own root has the file too.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "memory"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "memory", "memory.oom_control"), []byte("oom_kill 0\n"), 0o644))
	return cgroupTree{t, root}
}

// set writes the kernel's count of OOM kills in the cgroup of container id of pod uid.
func (c cgroupTree) set(uid, id string, n int) {
	dir := filepath.Join(c.root, "memory", "kubepods", "burstable", "pod"+uid, id)
	require.NoError(c.t, os.MkdirAll(dir, 0o755))
	body := fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)
	require.NoError(c.t, os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte(body), 0o644))
}

func (c cgroupTree) source(cfg *k8scontainerreceiver.Config) {
	cfg.ProcessOOMKills = k8scontainerreceiver.ProcessOOMKillsConfig{Source: k8scontainerreceiver.ProcessSourceCgroup, CgroupRoot: c.root}
}

// With process_oom_kills.source cgroup, an API server slow to answer the initial pod list: the
// first scrape finds no container. The lifetime counts of the containers that were there before
// are history all the same; a kill after counts.
func TestCgroupCountsWithASlowPodList(t *testing.T) {
	cgroups := newCgroupTree(t)
	cgroups.set(scrapertest.PodUID, "hog-0", 40)
	hog := podtest.NewLife("hog", "OOMKilled")
	p := newPipelineOf(t, nil, cgroups.source, nil)
	_, err := p.Client.CoreV1().Pods(podtest.Namespace).Create(context.Background(), podtest.NewPod("hog", scrapertest.PodUID, hog.Running(0)), metav1.CreateOptions{})
	require.NoError(t, err)
	release := p.HoldPodLists()
	p.StartListing()
	p.cycle(time.Second, false)
	release()
	p.WaitWatchers(1)
	p.WaitHandled(1)
	key := scrapertest.PodUID + "/hog"
	p.cycle(2*time.Second, false)
	assert.Equal(t, int64(0), p.counter("k8s.container.process.oom_kills")[key], "the lifetime count is no news")
	cgroups.set(scrapertest.PodUID, "hog-0", 41)
	p.cycle(3*time.Second, false)
	assert.Equal(t, int64(1), p.counter("k8s.container.process.oom_kills")[key])
}

// staticUID is the UID of a static pod: the hash of its manifest, which the runtime, the cgroup
// tree, /metrics/cadvisor and the Summary API know it by.
const staticUID = "3c8b2b4de5f94a34b1a8f2f7c6d9e0a1"

// A static pod's process kills and stats carry the static pod's UID; the informer shows its
// mirror pod, under another UID. Both sources count its kills, and its stats are found.
func TestStaticPodProcessKillsAndStats(t *testing.T) {
	etcd := podtest.NewLife("etcd")
	mirror := podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-1", etcd.Running(0)), staticUID)
	key := "mirror-1/etcd"
	t.Run("kubelet", func(t *testing.T) {
		p := newPipelineOf(t, nil, nil, nil)
		p.StartWith(mirror)
		counters := func(v int) string {
			return scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "etcd-node-a", UID: staticUID, Container: "etcd", ID: "etcd-0", Value: v})
		}
		p.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "etcd-node-a", staticUID, podtest.T0,
			kubelettest.Container("etcd", podtest.T0, podtest.T0, kubelettest.Usage{WorkingSet: 40 << 20}))))
		for i, v := range []int{1, 4} {
			p.Kubelet.SetCadvisor(counters(v))
			p.cycle(time.Duration(i+1)*time.Second, false)
		}
		assert.Equal(t, int64(3), p.counter("k8s.container.process.oom_kills")[key])
		assert.Contains(t, metricsOf(p, "mirror-1", "etcd"), "container.memory.working_set", "the Summary's stats of the static pod")
	})
	t.Run("cgroup", func(t *testing.T) {
		cgroups := newCgroupTree(t)
		cgroups.set(staticUID, "etcd-0", 1)
		p := newPipelineOf(t, nil, cgroups.source, nil)
		p.StartWith(mirror)
		p.cycle(time.Second, false)
		cgroups.set(staticUID, "etcd-0", 4)
		p.cycle(2*time.Second, false)
		assert.Equal(t, int64(3), p.counter("k8s.container.process.oom_kills")[key])
	})
}

// metricsOf names the metrics the sink got for a container.
func metricsOf(p *pipeline, uid, container string) map[string]bool {
	out := map[string]bool{}
	for _, md := range p.sink.AllMetrics() {
		for i := range md.ResourceMetrics().Len() {
			rm := md.ResourceMetrics().At(i)
			u, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
			c, _ := rm.Resource().Attributes().Get("k8s.container.name")
			if u.Str() != uid || c.Str() != container {
				continue
			}
			ms := rm.ScopeMetrics().At(0).Metrics()
			for j := range ms.Len() {
				out[ms.At(j).Name()] = true
			}
		}
	}
	return out
}

// A child is OOM-killed, then PID 1 exits by itself with 0 (restartPolicy Never); containerd
// marks the container OOMKilled with exit code 0. One kernel kill: 1 in total across
// k8s.container.oom_kills and k8s.container.process.oom_kills, and one kill record, whether the
// kubelet's counter showed the kill before the status, after it, or never.
func TestChildKilledThenPID1Exited(t *testing.T) {
	job := podtest.NewLife("job", "OOMKilled")
	exited := job.Terminated(0)
	exited.State.Terminated.ExitCode = 0
	for name, counter := range map[string][3]int{
		"counter before the status": {0, 1, -1},
		"counter after the status":  {0, 0, 1},
		"counter never showed it":   {0, 0, -1},
	} {
		t.Run(name, func(t *testing.T) {
			p := newPipelineOf(t, nil, nil, nil)
			logs := new(consumertest.LogsSink)
			p.Scraper.SetLogs(logs)
			pod := podtest.NewPod("job", scrapertest.PodUID, job.Running(0))
			p.StartWith(pod)
			set := func(v int) {
				if v < 0 {
					p.Kubelet.SetCadvisor(scrapertest.Cadvisor())
					return
				}
				p.Kubelet.SetCadvisor(scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "job", UID: scrapertest.PodUID, Container: "job", ID: "job-0", Value: v}))
			}
			set(counter[0])
			p.cycle(time.Second, false)
			set(counter[1])
			p.cycle(2*time.Second, false)
			p.Send(watch.Modified, podtest.WithStatus(pod, exited))
			set(counter[2])
			p.cycle(3*time.Second, false)
			p.cycle(4*time.Second, false)
			key := scrapertest.PodUID + "/job"
			assert.Equal(t, int64(0), p.kills()[key], "PID 1 was not killed")
			assert.Equal(t, int64(1), p.counter("k8s.container.process.oom_kills")[key])
			records := scrapertest.Records(logs)
			require.Len(t, records, 1)
			assert.Equal(t, "k8s.container.process.oom_kill", records[0].EventName())
		})
	}
}

// failingStorage is a storage extension whose writes fail while failing is set.
type failingStorage struct {
	failing atomic.Bool
	data    map[string][]byte
}

func (*failingStorage) Start(context.Context, component.Host) error { return nil }
func (*failingStorage) Shutdown(context.Context) error              { return nil }

func (f *failingStorage) GetClient(context.Context, component.Kind, component.ID, string) (storage.Client, error) {
	return failingClient{f}, nil
}

type failingClient struct{ f *failingStorage }

var errDiskFull = errors.New("disk full")

func (c failingClient) Get(_ context.Context, key string) ([]byte, error) { return c.f.data[key], nil }

func (c failingClient) Set(ctx context.Context, key string, value []byte) error {
	return c.Batch(ctx, storage.SetOperation(key, value))
}

func (c failingClient) Delete(ctx context.Context, key string) error {
	return c.Batch(ctx, storage.DeleteOperation(key))
}

func (c failingClient) Batch(_ context.Context, ops ...*storage.Operation) error {
	if c.f.failing.Load() {
		return errDiskFull
	}
	for _, op := range ops {
		switch op.Type {
		case storage.Get:
			op.Value = c.f.data[op.Key]
		case storage.Set:
			c.f.data[op.Key] = append([]byte(nil), op.Value...)
		case storage.Delete:
			delete(c.f.data, op.Key)
		}
	}
	return nil
}

func (failingClient) Close(context.Context) error { return nil }

type storageHost struct {
	ext map[component.ID]component.Component
}

func (h storageHost) GetExtensions() map[component.ID]component.Component { return h.ext }

// While the receiver cannot record what it reports, it hands on no kill, only stats; the kill
// goes out once recording works again. A crash while recording failed does not make the kill
// count twice: the processor never saw it, the restarted receiver reports it once.
func TestNoKillHandedOnWhileItsRecordFails(t *testing.T) {
	state := component.MustNewID("state")
	disk := &failingStorage{data: map[string][]byte{}}
	host := storageHost{map[component.ID]component.Component{state: disk}}
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	p := newPipelineOf(t, host, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state }, nil)
	p.StartWith(pod)
	p.Kubelet.SetSummary(kubelettest.Summary(podtest.Node, kubelettest.Pod(podtest.Namespace, "hog", "u1", podtest.T0,
		kubelettest.Container("hog", podtest.T0, podtest.T0, kubelettest.Usage{WorkingSet: 40 << 20}))))
	p.cycle(time.Second, false)

	disk.failing.Store(true)
	p.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	p.sink.Reset()
	p.cycle(2*time.Second, false)
	assert.Zero(t, p.kills()["u1/hog"], "no kill handed on")
	assert.True(t, metricsOf(p, "u1", "hog")["container.memory.working_set"], "the stats go on")
	assert.Positive(t, telemetrySum(t, p.Harness, "otelcol_k8s_container_storage_errors"))

	// The collector crashes; the next one finds recording works again.
	disk.failing.Store(false)
	next := scrapertest.NewWith(t, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state })
	next.Host = host
	next.At(3 * time.Second)
	next.StartWith(podtest.WithStatus(pod, hog.Terminated(0)))
	again := &pipeline{Harness: next, proc: p.proc, sink: p.sink}
	again.cycle(4*time.Second, false)
	again.cycle(5*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 1}, again.kills(), "counted once")
}

// Without a crash, the kill waits and goes out when recording works again.
func TestKillHandedOnWhenItsRecordWorksAgain(t *testing.T) {
	state := component.MustNewID("state")
	disk := &failingStorage{data: map[string][]byte{}}
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	p := newPipelineOf(t, storageHost{map[component.ID]component.Component{state: disk}}, func(cfg *k8scontainerreceiver.Config) { cfg.Storage = &state }, nil)
	p.StartWith(pod)
	p.cycle(time.Second, false)
	disk.failing.Store(true)
	p.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	p.cycle(2*time.Second, false)
	p.cycle(3*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 0}, p.kills())
	disk.failing.Store(false)
	p.cycle(4*time.Second, false)
	assert.Equal(t, map[string]int64{"u1/hog": 1}, p.kills())
}

// telemetrySum is the sum of the receiver's self-telemetry counter name, 0 if never recorded.
func telemetrySum(t *testing.T, h *scrapertest.Harness, name string) int64 {
	t.Helper()
	m, err := h.Telemetry.GetMetric(name)
	if err != nil {
		return 0
	}
	data, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is no int sum", name)
	sum := int64(0)
	for _, dp := range data.DataPoints {
		sum += dp.Value
	}
	return sum
}

// hogCounter is the kubelet's answer with the counter of instance id of container hog.
func hogCounter(id string, v int) string {
	return scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "hog", UID: scrapertest.PodUID, Container: "hog", ID: id, Value: v})
}

// The kubelet leaves an instance out of the first answer the receiver gets (after a start
// without storage): when it is back, its count is its lifetime's, history. It is a baseline,
// not a new instance counted whole; a kill after it counts.
func TestInstanceMissingFromTheFirstReading(t *testing.T) {
	hog := podtest.NewLife("hog", "OOMKilled")
	p := newPipelineOf(t, nil, nil, nil)
	p.StartWith(podtest.NewPod("hog", scrapertest.PodUID, hog.Running(0)))
	key := scrapertest.PodUID + "/hog"
	p.Kubelet.SetCadvisor(scrapertest.Cadvisor())
	p.cycle(time.Second, false)
	p.Kubelet.SetCadvisor(hogCounter("hog-0", 7))
	p.cycle(2*time.Second, false)
	assert.Equal(t, int64(0), p.counter("k8s.container.process.oom_kills")[key], "the lifetime count is no news")
	p.Kubelet.SetCadvisor(hogCounter("hog-0", 8))
	p.cycle(3*time.Second, false)
	assert.Equal(t, int64(1), p.counter("k8s.container.process.oom_kills")[key])
}

// With process_oom_kills.source cgroup, a static pod whose mirror pod is missing at the first
// reading (deleted, not created again yet): its containers are not read. When the mirror pod is
// back, their counts are their lifetimes', history.
func TestStaticPodWithoutMirrorPodAtTheFirstReading(t *testing.T) {
	cgroups := newCgroupTree(t)
	cgroups.set(staticUID, "etcd-0", 5)
	etcd := podtest.NewLife("etcd")
	p := newPipelineOf(t, nil, cgroups.source, nil)
	p.StartWith()
	p.cycle(time.Second, false)
	p.Send(watch.Added, podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-1", etcd.Running(0)), staticUID))
	p.cycle(2*time.Second, false)
	key := "mirror-1/etcd"
	assert.Equal(t, int64(0), p.counter("k8s.container.process.oom_kills")[key], "the lifetime count is no news")
	cgroups.set(staticUID, "etcd-0", 6)
	p.cycle(3*time.Second, false)
	assert.Equal(t, int64(1), p.counter("k8s.container.process.oom_kills")[key])
}

// The kubelet leaves an instance its pod shows out of its answers for longer than the receiver
// keeps a counter no pod shows: back, it counts its growth, not its whole count again.
func TestInstanceMissingLongerThanACounterIsKept(t *testing.T) {
	hog := podtest.NewLife("hog", "OOMKilled")
	p := newPipelineOf(t, nil, nil, nil)
	p.StartWith(podtest.NewPod("hog", scrapertest.PodUID, hog.Running(0)))
	key := scrapertest.PodUID + "/hog"
	p.Kubelet.SetCadvisor(hogCounter("hog-0", 7))
	p.cycle(time.Second, false)
	p.Kubelet.SetCadvisor(scrapertest.Cadvisor())
	for i := range 10 {
		p.cycle(time.Duration(2+i)*time.Second, false)
	}
	p.Kubelet.SetCadvisor(hogCounter("hog-0", 8))
	p.cycle(12*time.Second, false)
	assert.Equal(t, int64(1), p.counter("k8s.container.process.oom_kills")[key])
}

// With process_oom_kills.source cgroup and storage, the pod list is slow after a restart, for
// longer than the receiver keeps a counter no pod shows: the restored counters are kept while
// no pod list can tell, and the growth since counts, not the whole count.
func TestCgroupCountersKeptThroughASlowPodListAfterARestart(t *testing.T) {
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())
	state := storagetest.NewStorageID("state")
	cgroups := newCgroupTree(t)
	cgroups.set(scrapertest.PodUID, "hog-0", 7)
	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", scrapertest.PodUID, hog.Running(0))
	key := scrapertest.PodUID + "/hog"
	config := func(cfg *k8scontainerreceiver.Config) {
		cgroups.source(cfg)
		cfg.Storage = &state
	}
	storing := func(cfg *oomcounterprocessor.Config) { cfg.Storage = &state }

	first := newPipelineOf(t, host, config, storing)
	first.StartWith(pod)
	first.cycle(time.Second, false)
	cgroups.set(scrapertest.PodUID, "hog-0", 8)
	first.cycle(2*time.Second, false)
	assert.Equal(t, int64(1), first.counter("k8s.container.process.oom_kills")[key])
	require.NoError(t, first.Scraper.Shutdown(context.Background()))
	require.NoError(t, first.proc.Shutdown(context.Background()))

	cgroups.set(scrapertest.PodUID, "hog-0", 9)
	second := newPipelineOf(t, host, config, storing)
	_, err := second.Client.CoreV1().Pods(podtest.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	release := second.HoldPodLists()
	second.StartListing()
	for i := range 10 {
		second.cycle(time.Minute+time.Duration(i)*time.Second, false)
	}
	release()
	second.WaitWatchers(1)
	second.WaitHandled(1)
	second.cycle(time.Minute+10*time.Second, false)
	assert.Equal(t, int64(2), second.counter("k8s.container.process.oom_kills")[key], "the kill while down counts once")
}

// With the kubelet's counters, kills read before the slow pod list brought their pod wait for
// it, and count then.
func TestKillsReadBeforeThePodListArrived(t *testing.T) {
	hog := podtest.NewLife("hog", "OOMKilled")
	p := newPipelineOf(t, nil, nil, nil)
	_, err := p.Client.CoreV1().Pods(podtest.Namespace).Create(context.Background(), podtest.NewPod("hog", scrapertest.PodUID, hog.Running(0)), metav1.CreateOptions{})
	require.NoError(t, err)
	release := p.HoldPodLists()
	p.StartListing()
	key := scrapertest.PodUID + "/hog"
	p.Kubelet.SetCadvisor(hogCounter("hog-0", 7))
	p.cycle(time.Second, false)
	p.Kubelet.SetCadvisor(hogCounter("hog-0", 9))
	p.cycle(2*time.Second, false)
	release()
	p.WaitWatchers(1)
	p.WaitHandled(1)
	p.cycle(3*time.Second, false)
	assert.Equal(t, int64(2), p.counter("k8s.container.process.oom_kills")[key])
	p.cycle(4*time.Second, false)
	assert.Equal(t, int64(2), p.counter("k8s.container.process.oom_kills")[key], "handed on once")
}

// With the kubelet's counters, kills read while a static pod's mirror pod is deleted and not
// created again yet wait for the new mirror pod, and count on it.
func TestKillsReadWhileTheMirrorPodIsMissing(t *testing.T) {
	etcd := podtest.NewLife("etcd")
	old := podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-1", etcd.Running(0)), staticUID)
	counter := func(v int) string {
		return scrapertest.Cadvisor(scrapertest.CadvisorCounter{Pod: "etcd-node-a", UID: staticUID, Container: "etcd", ID: "etcd-0", Value: v})
	}
	p := newPipelineOf(t, nil, nil, nil)
	p.StartWith(old)
	p.Kubelet.SetCadvisor(counter(1))
	p.cycle(time.Second, false)
	p.Send(watch.Deleted, old)
	p.cycle(2*time.Second, false)
	p.Kubelet.SetCadvisor(counter(4))
	p.cycle(3*time.Second, false)
	p.Send(watch.Added, podtest.Mirror(podtest.NewPod("etcd-node-a", "mirror-2", etcd.Running(0)), staticUID))
	p.cycle(4*time.Second, false)
	got := p.counter("k8s.container.process.oom_kills")
	assert.Equal(t, int64(3), got["mirror-1/etcd"]+got["mirror-2/etcd"])
	assert.Equal(t, int64(3), got["mirror-2/etcd"])
}
