// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// The scenarios: what the pod watch delivers, step by step, and what each scrape reports. A
// step happens at its time after podtest.T0 and is one of: a watch event for a pod, a relist
// (the watch broke; the informer lists the pods again and delivers the differences, handled
// events in all), or a scrape. A scrape's points are the k8s.container.oom_killed points of
// every container, by "pod UID/container", as "instance=value@time after T0"; golden names a
// file under testdata/scrape the whole scrape must match. After the last step, the receiver's
// self-telemetry (terminations and OOM kills observed, unseen, history, dropped) must be as
// given, counters left out being 0.

type scenario struct {
	name      string
	steps     []step
	telemetry map[string]int64
}

type step struct {
	at time.Duration

	event watch.EventType
	pod   *corev1.Pod

	relist  []*corev1.Pod
	handled int64

	scrape bool
	points map[string][]string
	golden string
}

func send(at time.Duration, event watch.EventType, pod *corev1.Pod) step {
	return step{at: at, event: event, pod: pod}
}

func relist(at time.Duration, handled int64, pods ...*corev1.Pod) step {
	return step{at: at, relist: pods, handled: handled}
}

func scrape(at time.Duration, points map[string][]string) step {
	return step{at: at, scrape: true, points: points}
}

func scrapeGolden(at time.Duration, golden string, points map[string][]string) step {
	return step{at: at, scrape: true, points: points, golden: golden}
}

// scenarios are the cases; a case is data, runScenario the one runner.
func scenarios() []scenario {
	const s = time.Second
	hog2 := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	hog3 := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled")
	hog4 := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled", "OOMKilled")
	job := podtest.NewLife("job", "OOMKilled")
	app := podtest.NewLife("app", "Error")
	setup := podtest.NewLife("setup", "OOMKilled")

	hogPod := podtest.NewPod("hog", "u1", hog2.Running(0))
	hogPod3 := podtest.NewPod("hog", "u1", hog3.Running(0))
	hogPod4 := podtest.NewPod("hog", "u1", hog4.Running(0))
	jobPod := restartNever(podtest.NewPod("job", "u1", job.Running(0)))
	appPod := podtest.NewPod("app", "u1", app.Running(0))
	gonePod := podtest.NewPod("gone", "u2", podtest.NewLife("c").Running(0))

	return []scenario{
		{
			name: "oom-in-a-restarting-container",
			steps: []step{
				send(0, watch.Added, hogPod),
				scrapeGolden(1*s, "oom-restarting-1-baseline", map[string][]string{"u1/hog": {"0=0@0s"}}),
				send(3*s, watch.Modified, podtest.WithStatus(hogPod, hog2.Terminated(0))),
				send(4*s, watch.Modified, podtest.WithStatus(hogPod, hog2.Running(1))),
				scrapeGolden(11*s, "oom-restarting-2-killed", map[string][]string{"u1/hog": {"0=1@3s"}}),
				// The latest state is sticky.
				scrape(21*s, map[string][]string{"u1/hog": {"0=1@21s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 1, "oom_kills_observed": 1},
		},
		{
			name: "three-ooms-between-two-scrapes",
			steps: []step{
				send(0, watch.Added, hogPod3),
				scrape(0, map[string][]string{"u1/hog": {"0=0@0s"}}),
				send(2*s, watch.Modified, podtest.WithStatus(hogPod3, hog3.Terminated(0))),
				send(3*s, watch.Modified, podtest.WithStatus(hogPod3, hog3.Running(1))),
				send(12*s, watch.Modified, podtest.WithStatus(hogPod3, hog3.Terminated(1))),
				send(13*s, watch.Modified, podtest.WithStatus(hogPod3, hog3.Running(2))),
				send(22*s, watch.Modified, podtest.WithStatus(hogPod3, hog3.Terminated(2))),
				send(23*s, watch.Modified, podtest.WithStatus(hogPod3, hog3.Running(3))),
				scrapeGolden(40*s, "three-ooms-between-scrapes", map[string][]string{"u1/hog": {"0=1@2s", "1=1@12s", "2=1@22s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 3, "oom_kills_observed": 3},
		},
		{
			name: "oom-with-restart-policy-never",
			steps: []step{
				send(0, watch.Added, jobPod),
				scrape(0, map[string][]string{"u1/job": {"0=0@0s"}}),
				send(5*s, watch.Modified, failed(podtest.WithStatus(jobPod, job.Terminated(0)))),
				scrapeGolden(10*s, "restart-policy-never", map[string][]string{"u1/job": {"0=1@5s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 1, "oom_kills_observed": 1},
		},
		{
			name: "init-container-oom",
			steps: []step{
				send(0, watch.Added, initPod(setup.Running(0))),
				scrape(0, map[string][]string{"u1/setup": {"0=0@0s"}, "u1/app": {"0=0@0s"}}),
				send(2*s, watch.Modified, initPod(setup.Terminated(0))),
				scrapeGolden(10*s, "init-container-oom", map[string][]string{"u1/setup": {"0=1@2s"}, "u1/app": {"0=0@10s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 1, "oom_kills_observed": 1},
		},
		{
			name: "crash-that-is-no-oom-gives-zero",
			steps: []step{
				send(0, watch.Added, appPod),
				scrape(0, map[string][]string{"u1/app": {"0=0@0s"}}),
				send(2*s, watch.Modified, podtest.WithStatus(appPod, app.Terminated(0))),
				send(3*s, watch.Modified, podtest.WithStatus(appPod, app.Running(1))),
				scrapeGolden(10*s, "crash-error-exit-1", map[string][]string{"u1/app": {"0=0@2s"}}),
				scrape(20*s, map[string][]string{"u1/app": {"1=0@20s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 1},
		},
		{
			// The restart moves the same termination to lastState; then a status like the real one:
			// both fields OOMKilled, different containers.
			name: "termination-in-state-then-last-state-is-one",
			steps: []step{
				send(0, watch.Added, hogPod),
				scrape(0, map[string][]string{"u1/hog": {"0=0@0s"}}),
				send(2*s, watch.Modified, podtest.WithStatus(hogPod, hog2.Terminated(0))),
				scrape(10*s, map[string][]string{"u1/hog": {"0=1@2s"}}),
				send(12*s, watch.Modified, podtest.WithStatus(hogPod, hog2.Running(1))),
				send(14*s, watch.Modified, podtest.WithStatus(hogPod, hog2.Terminated(1))),
				scrapeGolden(20*s, "state-then-last-state", map[string][]string{"u1/hog": {"1=1@14s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 2, "oom_kills_observed": 2},
		},
		{
			// The watch breaks; meanwhile the pod was killed twice more (only the last two
			// terminations are visible) and the other pod was deleted. Instance 0 was counted before
			// the relist; 1 and 2 come after it, oldest first; the same state once more from
			// another relist adds nothing.
			name: "relist-counts-nothing-twice-and-catches-up",
			steps: []step{
				send(0, watch.Added, hogPod4),
				send(0, watch.Added, gonePod),
				send(2*s, watch.Modified, podtest.WithStatus(hogPod4, hog4.Terminated(0))),
				scrape(2*s, map[string][]string{"u1/hog": {"0=0@0s", "0=1@2s"}, "u2/c": {"0=0@0s"}}),
				relist(30*s, 2, podtest.WithStatus(hogPod4, hog4.Terminated(2))), // an update and a delete
				scrape(40*s, map[string][]string{"u1/hog": {"1=1@30s", "2=1@30.000000001s"}}),
				relist(40*s, 1, podtest.WithStatus(hogPod4, hog4.Terminated(2))),
				scrape(50*s, map[string][]string{"u1/hog": {"2=1@50s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 3, "oom_kills_observed": 3},
		},
		{
			name: "pod-recreated-with-the-same-name",
			steps: []step{
				// Created while the receiver watched: its kill is news, after a baseline.
				send(0, watch.Added, podtest.NewPod("hog", "u1", hog2.Terminated(0))),
				scrape(0, map[string][]string{"u1/hog": {"0=0@0s", "0=1@1ns"}}),
				send(5*s, watch.Deleted, podtest.NewPod("hog", "u1", hog2.Terminated(0))),
				send(6*s, watch.Added, podtest.NewPod("hog", "u2", hog2.Running(0))),
				scrapeGolden(10*s, "pod-recreated", map[string][]string{"u2/hog": {"0=0@6s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 1, "oom_kills_observed": 1},
		},
		{
			// Deleted and re-created under the same name while the watch was down, the pod comes
			// back from the relist as an update from the old UID to the new one: the old pod's last
			// termination is still reported, then the old pod is forgotten.
			name: "pod-recreated-while-the-watch-was-down",
			steps: []step{
				send(0, watch.Added, hogPod),
				send(1*s, watch.Modified, podtest.WithStatus(hogPod, hog2.Terminated(0))),
				relist(2*s, 1, podtest.NewPod("hog", "u2", hog2.Running(0))),
				scrape(2*s, map[string][]string{"u1/hog": {"0=0@0s", "0=1@1s"}, "u2/hog": {"0=0@2s"}}),
				scrape(3*s, map[string][]string{"u2/hog": {"0=0@3s"}}),
			},
			telemetry: map[string]int64{"terminations_observed": 1, "oom_kills_observed": 1},
		},
		{
			// Killed and deleted between two scrapes: the kill is still reported, once; then nothing
			// of the pod is left.
			name: "pod-deleted",
			steps: []step{
				send(0, watch.Added, hogPod),
				scrape(0, map[string][]string{"u1/hog": {"0=0@0s"}}),
				send(2*s, watch.Deleted, podtest.WithStatus(hogPod, hog2.Terminated(0))),
				scrape(10*s, map[string][]string{"u1/hog": {"0=1@2s"}}),
				scrape(20*s, map[string][]string{}),
			},
			telemetry: map[string]int64{"terminations_observed": 1, "oom_kills_observed": 1},
		},
	}
}

func TestScenarios(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runScenario(t, sc)
		})
	}
}

func runScenario(t *testing.T, sc scenario) {
	h := scrapertest.NewWith(t, nil)
	h.Start()
	for i, st := range sc.steps {
		h.At(st.at)
		switch {
		case st.pod != nil:
			h.Send(st.event, st.pod)
		case st.relist != nil:
			h.Relist(st.relist...)
			h.WaitHandled(st.handled)
		case st.scrape:
			md := h.Scrape()
			if st.golden != "" {
				checkGolden(t, st.golden, md)
			}
			assert.Equal(t, st.points, oomPoints(md), "step %d: the scrape at %s", i, st.at)
		default:
			require.Failf(t, "a step does nothing", "step %d", i)
		}
	}
	want := map[string]int64{}
	for _, name := range receiverCounters {
		want[name] = sc.telemetry[name]
	}
	for name, v := range sc.telemetry {
		want[name] = v // a misspelt counter shows in the diff
	}
	assert.Equal(t, want, readCounters(t, h), "self-telemetry")
}

// receiverCounters are the counters of what the pod watch brought.
var receiverCounters = []string{"terminations_observed", "oom_kills_observed", "terminations_unseen", "oom_kills_history", "terminations_dropped"}

func readCounters(t *testing.T, h *scrapertest.Harness) map[string]int64 {
	got := map[string]int64{}
	for _, name := range receiverCounters {
		got[name] = 0
		m, err := h.Telemetry.GetMetric("otelcol_k8s_container_" + name)
		if err != nil {
			continue // never recorded
		}
		sum, ok := m.Data.(metricdata.Sum[int64])
		require.True(t, ok, name)
		for _, dp := range sum.DataPoints {
			got[name] += dp.Value
		}
	}
	return got
}

// restartNever makes p a pod that is not restarted.
func restartNever(p *corev1.Pod) *corev1.Pod {
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	return p
}

// failed is p once its only container ended for good.
func failed(p *corev1.Pod) *corev1.Pod {
	p.Status.Phase = corev1.PodFailed
	return p
}

// initPod is pod u1 whose init container setup (limited to 16 MiB) shows status, while the
// container app waits for it.
func initPod(status corev1.ContainerStatus) *corev1.Pod {
	p := podtest.NewPod("app", "u1")
	p.Spec.InitContainers = []corev1.Container{{Name: "setup", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")},
	}}}
	p.Spec.Containers = []corev1.Container{{Name: "app"}}
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{status}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
	return p
}
