// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/internal/testing/backend"
	"github.com/oomwatch/oomwatch/internal/testing/collectorrun"
	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
)

// interval is the collection interval of every collector in these tests.
const interval = 2 * time.Second

// Deadlines derive from the collection interval. A change the API server shows reaches the
// backend at the collector's next scrape, at most one interval later, then through the batch
// processor (100 ms) and the exporter. On a loaded 2-core machine (the cluster, the collector,
// Prometheus and the test share it) a scrape tick or an export can be late by a good part of an
// interval, so:
//   - reportLag, the most a test asserts a change may take to reach the backend, is two
//     intervals;
//   - a deadline a test waits for before it gives up adds slack on top, so a slow run fails
//     with the value it saw rather than a timing flake.
const (
	reportLag = 2 * interval
	slack     = 5 * time.Second
)

// scrapes is how long to wait for what the collector shows within n scrapes.
func scrapes(n int) time.Duration { return time.Duration(n)*interval + slack }

// agentOptions shape one collector.
type agentOptions struct {
	node string
	// kubelet: "" reads the node's kubelet found through the Node object; "off" disables the
	// stats; anything else is an explicit endpoint, reached without verifying its certificate.
	kubelet   string
	storage   bool
	gapPolicy string
	// sink receives the export; nil starts a new one.
	sink *otlpsink.Sink
	// name separates the state folders of several collectors in one test.
	name string
	// checkpoint is oom_counter's checkpoint_interval with storage; 0 is 1s.
	checkpoint time.Duration
	// prometheus, when not 0, is the loopback port of a prometheus exporter beside the OTLP
	// one; it stays the same across restarts, as a scrape target does.
	prometheus int
	// logs adds the logs pipeline deploy/ ships: the records, batched, to the OTLP backend.
	logs bool
	// cgroupRoot, when set, has the receiver read process OOM kills (and the limits each kill
	// hit) from the cgroup filesystem mounted there, as deploy/ does.
	cgroupRoot string
	// podEvents has the receiver write an Event on the pod of each kill (pod_events).
	podEvents bool
	// kernelLog has the receiver read the kernel's OOM-kill reports from /dev/kmsg.
	kernelLog bool
}

// agent is a running collector process and the backend it exports to.
type agent struct {
	t      *testing.T
	opts   agentOptions
	dir    string
	health int
	telem  int
	sink   *otlpsink.Sink
	proc   *collectorrun.Collector
	log    *os.File
}

func startAgent(t *testing.T, opts agentOptions) *agent {
	t.Helper()
	s := need(t)
	if opts.name == "" {
		opts.name = "agent"
	}
	a := &agent{t: t, opts: opts, dir: filepath.Join(t.TempDir(), opts.name), sink: opts.sink}
	require.NoError(t, os.MkdirAll(filepath.Join(a.dir, "state"), 0o750))
	if a.sink == nil {
		a.sink = otlpsink.New(fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		require.NoError(t, a.sink.Start(context.Background()))
		t.Cleanup(func() { _ = a.sink.Stop(context.Background()) })
	}
	var err error
	a.log, err = os.Create(filepath.Join(t.TempDir(), opts.name+".log"))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = a.log.Close()
		if t.Failed() {
			if b, err := os.ReadFile(a.log.Name()); err == nil {
				t.Logf("collector %s log (tail):\n%s", opts.name, backend.Tail(string(b), 40))
			}
		}
	})
	_ = s
	a.start()
	t.Cleanup(func() { _ = a.stop() })
	return a
}

// start (re)starts the collector process with the agent's options, on new ports.
func (a *agent) start() {
	a.t.Helper()
	s := need(a.t)
	a.health, a.telem = freePort(a.t), freePort(a.t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	config := a.config()
	if a.opts.logs {
		// The pipelines are the last section of the configuration: the logs one goes after.
		config += logsPipeline
	}
	proc, err := collectorrun.Start(ctx, collectorrun.Options{
		Binary:    s.collector,
		Config:    config,
		Dir:       a.dir,
		Env:       []string{"KUBECONFIG=" + s.kubeconfig},
		HealthURL: fmt.Sprintf("http://127.0.0.1:%d/", a.health),
		Log:       a.log,
	})
	require.NoError(a.t, err)
	a.proc = proc
}

func (a *agent) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return a.proc.Stop(ctx)
}

func (a *agent) config() string {
	kubelet := "    kubelet:\n      enabled: true\n      auth_type: kubeConfig\n"
	switch a.opts.kubelet {
	case "":
	case "off":
		kubelet = "    kubelet:\n      enabled: false\n"
	default:
		kubelet = fmt.Sprintf("    kubelet:\n      enabled: true\n      auth_type: none\n      endpoint: %s\n      insecure_skip_verify: true\n      timeout: 1s\n", a.opts.kubelet)
	}
	if a.opts.storage {
		// The receiver remembers when it last looked, the processor its counts.
		kubelet = "    storage: file_storage\n" + kubelet
	}
	if a.opts.podEvents {
		kubelet = "    pod_events: true\n" + kubelet
	}
	if a.opts.kernelLog {
		kubelet = "    kernel_log:\n      enabled: true\n" + kubelet
	}
	if a.opts.cgroupRoot != "" {
		kubelet = "    process_oom_kills:\n      source: cgroup\n      cgroup_root: " + a.opts.cgroupRoot + "\n" + kubelet
	}
	counter := "  oom_counter:\n"
	if a.opts.gapPolicy != "" {
		counter += "    gap_policy: " + a.opts.gapPolicy + "\n"
	}
	extensions := "[health_check]"
	storageExt := ""
	if a.opts.storage {
		checkpoint := a.opts.checkpoint
		if checkpoint == 0 {
			checkpoint = time.Second
		}
		counter += fmt.Sprintf("    storage: file_storage\n    checkpoint_interval: %s\n", checkpoint)
		extensions = "[health_check, file_storage]"
		storageExt = fmt.Sprintf("  file_storage:\n    directory: %s\n", filepath.Join(a.dir, "state"))
	}
	exporters := "[otlp_grpc]"
	promExporter := ""
	if a.opts.prometheus != 0 {
		exporters = "[otlp_grpc, prometheus]"
		// Resource attributes become labels: without them every container's counter would be
		// one series.
		promExporter = fmt.Sprintf("  prometheus:\n    endpoint: 127.0.0.1:%d\n    resource_constant_labels:\n      included: [\"*\"]\n", a.opts.prometheus)
	}
	return fmt.Sprintf(`extensions:
  health_check:
    endpoint: 127.0.0.1:%d
%s
receivers:
  k8s_container:
    collection_interval: %s
    initial_delay: 0s
    auth_type: kubeConfig
    node: %s
%s
processors:
%s
  batch:
    timeout: 100ms

exporters:
  otlp_grpc:
    endpoint: %s
    tls:
      insecure: true
    # A batch that cannot be sent within a second is dropped: the counters must not need it.
    retry_on_failure:
      initial_interval: 200ms
      max_interval: 500ms
      max_elapsed_time: 1s
%s
service:
  extensions: %s
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
  pipelines:
    metrics:
      receivers: [k8s_container]
      processors: [oom_counter, batch]
      exporters: %s
`, a.health, storageExt, interval, a.opts.node, kubelet, counter, a.sink.Endpoint(), promExporter, extensions, a.telem, exporters)
}

// ooms returns the latest k8s.container.oom_kills point of a container, if any arrived.
func (a *agent) ooms(podUID, container string) (otlpsink.Point, bool) {
	return a.sink.Latest("k8s.container.oom_kills", map[string]string{"k8s.pod.uid": podUID, "k8s.container.name": container})
}

// waitOOMs waits until the backend holds count for the container.
func (a *agent) waitOOMs(podUID, container string, count float64, within time.Duration) otlpsink.Point {
	a.t.Helper()
	var last otlpsink.Point
	require.Eventuallyf(a.t, func() bool {
		p, ok := a.ooms(podUID, container)
		last = p
		return ok && p.Value == count
	}, within, 100*time.Millisecond, "k8s.container.oom_kills of %s/%s: want %v, last point %+v", podUID, container, count, &last)
	return last
}

// reportsSince returns, in arrival order, the k8s.container.oom_kills points of a container
// that arrived after since.
func (a *agent) reportsSince(podUID, container string, since time.Time) []otlpsink.Point {
	var out []otlpsink.Point
	for _, p := range a.sink.Points("k8s.container.oom_kills", map[string]string{"k8s.pod.uid": podUID, "k8s.container.name": container}) {
		if p.Received.After(since) {
			out = append(out, p)
		}
	}
	return out
}

// waitReports waits until n batches of points stamped after since reported the container (one
// batch per scrape), and returns the latest point: with n = 2, what the collector says one full
// scrape after it could first have seen a change made at since.
func (a *agent) waitReports(podUID, container string, since time.Time, n int) otlpsink.Point {
	a.t.Helper()
	var latest otlpsink.Point
	require.Eventuallyf(a.t, func() bool {
		batches := map[time.Time]bool{}
		for _, p := range a.reportsSince(podUID, container, since) {
			if !p.Time.After(since) {
				continue
			}
			batches[p.Received] = true
			if !p.Time.Before(latest.Time) {
				latest = p
			}
		}
		return len(batches) >= n
	}, scrapes(n), 50*time.Millisecond, "%s/%s: %d reports after %s not received", podUID, container, n, since.Format("15:04:05.000"))
	return latest
}

// waitSaved waits until the collector's storage folder was written after since: the state it
// held then is on disk. A processor that saved the state before it exported the count may have
// nothing newer to write; so past one checkpoint interval and slack the wait ends with a note
// instead of a failure.
func (a *agent) waitSaved(since time.Time) {
	a.t.Helper()
	checkpoint := a.opts.checkpoint
	if checkpoint == 0 {
		checkpoint = time.Second
	}
	deadline := time.Now().Add(checkpoint + slack)
	for time.Now().Before(deadline) {
		if lastWrite(a.t, filepath.Join(a.dir, "state")).After(since) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.t.Logf("no write to the storage after %s within %s", since.Format("15:04:05.000"), checkpoint+slack)
}

// lastWrite is the newest modification time of a file in dir.
func lastWrite(t *testing.T, dir string) time.Time {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var newest time.Time
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && info.Mode().IsRegular() && info.ModTime().After(newest) {
			newest = info.ModTime()
		}
	}
	return newest
}
