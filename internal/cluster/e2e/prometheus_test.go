// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
	"github.com/oomwatch/oomwatch/internal/testing/promserver"
)

// promOOMKills is k8s.container.oom_kills as the prometheus exporter renders it: a monotonic
// sum gets _total; the unit {event} is an annotation and adds nothing.
const promOOMKills = "k8s_container_oom_kills_total"

// durable is one container counted by a collector with file_storage that exports to an OTLP
// backend and, through its prometheus exporter, to a real Prometheus; the collector gets
// SIGKILLed and restarted on the same storage.
type durable struct {
	t     *testing.T
	a     *agent
	prom  *promserver.Server
	uid   string
	sel   string // the container's counter in PromQL
	begin time.Time
}

// startDurable starts the collector on node and a Prometheus scraping it. The checkpoint
// interval is the default, 30 s: what is exported must be durable whenever the checkpoint
// comes.
func startDurable(t *testing.T, node, kubelet, name string) *durable {
	t.Helper()
	promPort := freePort(t)
	d := &durable{t: t, begin: time.Now()}
	d.a = startAgent(t, agentOptions{
		node: node, kubelet: kubelet, storage: true, name: name,
		checkpoint: 30 * time.Second, prometheus: promPort,
	})
	d.prom = startPrometheus(t, fmt.Sprintf("127.0.0.1:%d", promPort))
	return d
}

func (d *durable) watch(pod *corev1.Pod) {
	d.uid = string(pod.UID)
	d.sel = fmt.Sprintf(`%s{k8s_pod_uid=%q,k8s_container_name="app"}`, promOOMKills, d.uid)
}

// latest is the count the collector reported last.
func (d *durable) latest() float64 {
	d.t.Helper()
	p, ok := d.a.ooms(d.uid, "app")
	require.True(d.t, ok, "no count of the container yet")
	return p.Value
}

// exported waits until the collector reports one more than before, after since, and returns
// that point. Relative to before, not to the true count: a count lost earlier shows at the end,
// in PromQL.
func (d *durable) exported(before float64, since time.Time, within time.Duration) otlpsink.Point {
	d.t.Helper()
	var last otlpsink.Point
	require.Eventuallyf(d.t, func() bool {
		for _, p := range d.a.reportsSince(d.uid, "app", since) {
			last = p
			if p.Value == before+1 {
				return true
			}
		}
		return false
	}, within, 20*time.Millisecond, "no count %v after %s, last point %+v", before+1, since.Format("15:04:05.000"), &last)
	return last
}

// crash SIGKILLs the collector and starts it again on the same storage, then waits until the
// new process reported the container to the OTLP backend and Prometheus scraped it.
func (d *durable) crash(moment string) {
	d.t.Helper()
	require.NoError(d.t, d.a.proc.Kill())
	killed := time.Now()
	d.t.Logf("SIGKILL %s", moment)
	d.restart(killed)
}

func (d *durable) restart(killed time.Time) {
	d.t.Helper()
	d.a.start()
	p := d.a.waitReports(d.uid, "app", killed, 1)
	s := d.prom.SampleAfter(d.sel, killed, scrapes(1)+promScrapeInterval)
	d.t.Logf("restarted: the OTLP backend got %v (start %s), Prometheus scraped %v", p.Value, p.Start.Format("15:04:05.000"), s.Value)
}

// check asks Prometheus what a user would, once it has scraped what the collector reported one
// full scrape after the last change: the counter's last value is want, resets() over the run is
// 0, and the container has exactly one series.
func (d *durable) check(want int) {
	d.t.Helper()
	last := d.a.waitReports(d.uid, "app", time.Now(), 2)
	d.prom.SampleAfter(d.sel, last.Received, scrapes(1)+promScrapeInterval)
	d.t.Logf("the OTLP backend's last point: %v (start %s); true count %d", last.Value, last.Start.Format("15:04:05.000"), want)

	window := fmt.Sprintf("%ds", int(math.Ceil(time.Since(d.begin).Seconds()))+5)
	if history, err := d.prom.RangeVector(d.sel + "[" + window + "]"); err == nil {
		for _, ser := range history {
			var vals []string
			for i, s := range ser.Samples {
				if i == 0 || s.Value != ser.Samples[i-1].Value {
					vals = append(vals, fmt.Sprintf("%v@%s", s.Value, s.Time.Format("15:04:05")))
				}
			}
			d.t.Logf("Prometheus: %s over the run, at each change: %s", d.sel, strings.Join(vals, " "))
		}
	}
	got, err := d.prom.One(d.sel)
	require.NoError(d.t, err)
	assert.Equal(d.t, float64(want), got.Value, "%s: the last value is not the number of OOM kills", d.sel)
	resets, err := d.prom.One("resets(" + d.sel + "[" + window + "])")
	require.NoError(d.t, err)
	assert.Zero(d.t, resets.Value, "resets(%s[%s]): Prometheus saw the counter go down", d.sel, window)
	series, err := d.prom.SeriesOf(fmt.Sprintf(`{__name__=%q,k8s_pod_uid=%q,k8s_container_name="app"}`, promOOMKills, d.uid), d.begin, time.Now())
	require.NoError(d.t, err)
	assert.Len(d.t, series, 1, "series of the container over the run: %v", series)
}

// TestPrometheusCountSurvivesSIGKILL: with storage, a collector killed by SIGKILL at any moment
// and restarted on the same storage loses no OOM kill and shows Prometheus no counter reset. The
// kills are written on the stand-in node, and the collector is killed:
//   - as soon as the OTLP backend received a new count (the prometheus exporter, fed by the same
//     pipeline, serves it too; Prometheus may or may not have scraped it);
//   - as soon as Prometheus scraped a new count;
//   - right after an OOM kill reached the API server, before the collector could report it (the
//     container restarts while the collector is down).
//
// At the end, asked in PromQL as a user would: the counter's last value is the number of OOM
// kills, resets() over the whole run is 0, and the container has exactly one series. A count
// exported but saved only at the next checkpoint is lost by a SIGKILL: the restarted collector
// starts the series again, which Prometheus sees as a reset, and the last value falls short.
func TestPrometheusCountSurvivesSIGKILL(t *testing.T) {
	ns := namespace(t, "e2e-prom-kill")
	d := startDurable(t, standinNode, "off", "durable")
	pod := standinPod(t, ns, "victim")
	d.watch(pod)
	pod = writeStatus(t, pod, running("app", 0, ""))
	d.a.waitOOMs(d.uid, "app", 0, 30*time.Second)
	d.prom.SampleAfter(d.sel, d.begin, 30*time.Second)

	kills := 0           // OOM kills written: the true count
	instance := int32(0) // the container instance running now
	lastReason := ""
	oomKill := func() {
		pod = writeStatus(t, pod, ended("app", instance, "OOMKilled", lastReason))
		kills++
		lastReason = "OOMKilled"
	}
	restartContainer := func() {
		instance++
		pod = writeStatus(t, pod, running("app", instance, lastReason))
	}
	// killed writes an OOM kill and the restart, and waits until the collector exported it.
	killed := func() otlpsink.Point {
		before, since := d.latest(), time.Now()
		oomKill()
		restartContainer()
		return d.exported(before, since, scrapes(1))
	}

	// 1. SIGKILL as soon as the OTLP backend received the count.
	p := killed()
	d.crash(fmt.Sprintf("%s after the OTLP backend received count %v (%d OOM kills)", time.Since(p.Received).Round(time.Millisecond), p.Value, kills))

	// 2. SIGKILL as soon as Prometheus scraped the count.
	p = killed()
	s := d.prom.WaitFor(d.sel, scrapes(1)+promScrapeInterval, func(s promserver.Sample) bool { return s.Value == p.Value })
	d.crash(fmt.Sprintf("right after Prometheus scraped count %v (%d OOM kills)", s.Value, kills))

	// 3. SIGKILL right after an OOM kill reached the API server; the container restarts while
	// the collector is down.
	oomKill()
	require.NoError(t, d.a.proc.Kill())
	down := time.Now()
	restartContainer()
	t.Logf("SIGKILL right after OOM kill %d was written, before a scrape could report it", kills)
	d.restart(down)

	// 4. SIGKILL as soon as the OTLP backend received the count, again: what the restarted
	// collector counts must be durable too.
	p = killed()
	d.crash(fmt.Sprintf("%s after the OTLP backend received count %v (%d OOM kills)", time.Since(p.Received).Round(time.Millisecond), p.Value, kills))

	// 5. One more, and no crash.
	killed()
	d.check(kills)
}

// TestPrometheusRealNodeCountSurvivesSIGKILL: the same on the real node, with real kernel OOM
// kills paced by the kubelet's back-off: the collector is SIGKILLed as soon as the OTLP backend
// received the first count, and as soon as Prometheus scraped the second.
func TestPrometheusRealNodeCountSurvivesSIGKILL(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-prom-real")
	d := startDurable(t, s.realNode, "", "real-durable")
	pod := createPod(t, ns, "leaky", s.realNode, corev1.RestartPolicyAlways, nil, leaker("app"))
	d.watch(pod)
	kills := oomTimes(t, ns, "leaky", "app")
	seen := 0
	// The pod was created while the collector watched: its counter starts at 0.
	before, since := 0.0, d.begin
	for k := 1; k <= 3; k++ {
		select {
		case <-kills:
			seen++
		case <-time.After(90 * time.Second):
			t.Fatalf("OOM kill %d not seen in the pod status", k)
		}
		p := d.exported(before, since, reportLag+slack)
		switch k {
		case 1:
			d.crash(fmt.Sprintf("%s after the OTLP backend received count %v (%d OOM kills)", time.Since(p.Received).Round(time.Millisecond), p.Value, seen))
		case 2:
			s := d.prom.WaitFor(d.sel, scrapes(1)+promScrapeInterval, func(s promserver.Sample) bool { return s.Value == p.Value })
			d.crash(fmt.Sprintf("right after Prometheus scraped count %v (%d OOM kills)", s.Value, seen))
		}
		before, since = d.latest(), time.Now()
	}
	// The next kill comes after a back-off of 40 s; one that came anyway is counted in.
	for more := true; more; {
		select {
		case <-kills:
			seen++
		default:
			more = false
		}
	}
	d.check(seen)
}
