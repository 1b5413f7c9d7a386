// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command oomwatch-demo shows OOM kills being counted on a live local cluster. It starts the
// project's cluster with a real node, creates Deployments and a Job whose containers the kernel
// OOM-kills in several ways, runs the collector as the agent would run in its DaemonSet (with
// the permissions deploy/ ships, exporting to a Prometheus endpoint and over OTLP to a second
// collector acting as the backend), and shows per workload and container, refreshed every two
// seconds, memory against the limit, restarts and `k8s.container.oom_kills`. Ctrl-C deletes
// the workload, stops both collectors and tears the cluster down.
//
// It needs root and the binaries that `make demo` builds first (cluster and collector).
//
//	oomwatch-demo [-for 5m] [-refresh 2s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/testing/collectorrun"
)

func main() {
	runFor := flag.Duration("for", 0, "stop by itself after this long (0: until Ctrl-C)")
	refresh := flag.Duration("refresh", 2*time.Second, "how often the table is refreshed")
	flag.Parse()

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "oomwatch-demo needs root: it starts a kubelet and containerd on this machine (cgroups, mounts, sysctls). Run it as root, e.g. sudo make demo.")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	if err := run(ctx, stop, *refresh); err != nil {
		fmt.Fprintln(os.Stderr, "oomwatch-demo:", err)
		os.Exit(1)
	}
}

// run sets everything up, shows the table until ctx ends, and undoes everything it started,
// on every path. stopSignals restores the default signal handling, so a second Ctrl-C during
// the teardown ends the program at once (`make cluster-down` then cleans up).
func run(ctx context.Context, stopSignals func(), refresh time.Duration) (err error) {
	opts, err := controlplane.Options{Node: true, Log: prefixWriter{os.Stdout}}.Defaults()
	if err != nil {
		return err
	}
	root := opts.ModuleDir
	collectorBin := filepath.Join(root, "_build", "otelcol-oomwatch", "otelcol-oomwatch")
	var bins []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd"} {
		bins = append(bins, filepath.Join(opts.Dir, "bin", b))
	}
	if err := requireFiles(append(bins, collectorBin)...); err != nil {
		return fmt.Errorf("%w: run `make demo`, which builds what is missing first", err)
	}
	if clusterRunning(opts.APIServerPort) {
		return fmt.Errorf("a local cluster already answers on 127.0.0.1:%d (make cluster-up, or tests): the demo starts and tears down its own, so stop that one first (make cluster-down) or wait for the tests to finish", opts.APIServerPort)
	}
	demoDir := filepath.Join(root, "_build", "demo")
	if err := os.MkdirAll(demoDir, 0o750); err != nil {
		return err
	}

	// From here on, whatever fails, everything started is stopped and the cluster torn down.
	var collectors []*collectorrun.Collector
	releaseLock := func() {}
	removeWorkload := func() error { return nil }
	defer func() {
		stopSignals()
		err = errors.Join(err, removeWorkload())
		fmt.Println(">> stopping the collectors")
		for i := len(collectors) - 1; i >= 0; i-- {
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			if serr := collectors[i].Stop(sctx); serr != nil {
				err = errors.Join(err, fmt.Errorf("stopping a collector: %w", serr))
			}
			cancel()
		}
		releaseLock() // Teardown takes it itself
		fmt.Println(">> tearing the cluster down")
		began := time.Now()
		tctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if terr := controlplane.Teardown(tctx, opts); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown (run `make cluster-down`): %w", terr))
			return
		}
		fmt.Printf(">> cluster torn down in %s\n", time.Since(began).Round(10*time.Millisecond))
	}()

	fmt.Println(">> starting etcd, kube-apiserver, the controller-manager and scheduler, containerd and a kubelet (seconds)")
	began := time.Now()
	c, err := controlplane.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("starting the cluster (logs in %s/logs): %w", opts.Dir, err)
	}
	version, err := cgroupVersion("/sys/fs/cgroup")
	if err != nil {
		version = "unknown"
	}
	fmt.Printf(">> node %s Ready after %s (cgroup %s, the host's)\n", opts.NodeName, time.Since(began).Round(10*time.Millisecond), version)
	release, err := holdClusterLock(ctx, opts.Dir)
	if err != nil {
		return fmt.Errorf("holding the cluster lock: %w", err)
	}
	releaseLock = release
	cs, err := c.Client()
	if err != nil {
		return err
	}

	fmt.Println(">> applying deploy/namespace.yaml and deploy/rbac.yaml; minting a token of oomwatch/oomwatch-agent")
	if err := installAgentRBAC(ctx, c); err != nil {
		return err
	}
	kubeconfig := filepath.Join(demoDir, "agent.kubeconfig")
	if err := c.ServiceAccountKubeconfig(ctx, agentNamespace, agentServiceAccount, kubeconfig, 24*time.Hour); err != nil {
		return err
	}

	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	otlpPort, promPort, healthPort, backendHealthPort := ports[0], ports[1], ports[2], ports[3]
	otlpEndpoint := "127.0.0.1:" + strconv.Itoa(otlpPort)
	backendLog := filepath.Join(demoDir, "backend.log")
	agentLog := filepath.Join(demoDir, "agent.log")

	// The agent sends its kill records here too: the table's explanation column.
	records := newKillRecords()
	recordsListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the kill records: %w", err)
	}
	recordsServer := &http.Server{Handler: records, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = recordsServer.Serve(recordsListener) }()
	defer func() { _ = recordsServer.Close() }()

	fmt.Printf(">> starting the backend collector (OTLP on %s, log %s)\n", otlpEndpoint, rel(root, backendLog))
	backend, err := startCollector(ctx, collectorBin, root, "demo-backend.yaml", filepath.Join(demoDir, "backend"), backendLog,
		[]string{"OTLP_ENDPOINT=" + otlpEndpoint, "DEMO_BACKEND_HEALTH_PORT=" + strconv.Itoa(backendHealthPort)},
		backendHealthPort)
	if err != nil {
		return fmt.Errorf("backend collector (log %s): %w", backendLog, err)
	}
	collectors = append(collectors, backend)

	fmt.Printf(">> starting the agent collector as oomwatch/oomwatch-agent (log %s)\n", rel(root, agentLog))
	agent, err := startCollector(ctx, collectorBin, root, "demo.yaml", filepath.Join(demoDir, "agent"), agentLog,
		[]string{
			"KUBECONFIG=" + kubeconfig, "K8S_NODE_NAME=" + opts.NodeName, "OTLP_ENDPOINT=" + otlpEndpoint,
			"DEMO_PROMETHEUS_PORT=" + strconv.Itoa(promPort), "DEMO_HEALTH_PORT=" + strconv.Itoa(healthPort),
			"DEMO_RECORDS_ENDPOINT=http://" + recordsListener.Addr().String(),
		},
		healthPort)
	if err != nil {
		return fmt.Errorf("agent collector (log %s): %w", agentLog, err)
	}
	collectors = append(collectors, agent)

	w := demoWorkload()
	fmt.Printf(">> creating the workload: %d Deployments, %d Job (%s UTC)\n", len(w.Deployments), len(w.Jobs), time.Now().UTC().Format("15:04:05.0"))
	removeWorkload = func() error {
		fmt.Println(">> deleting the Deployments and the Job; the garbage collector removes their pods")
		began := time.Now()
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := deleteWorkload(dctx, cs, w); err != nil {
			return fmt.Errorf("deleting the workload (the teardown stops what is left): %w", err)
		}
		fmt.Printf(">> their pods gone after %s\n", time.Since(began).Round(10*time.Millisecond))
		return nil
	}
	if err := createWorkload(ctx, c, cs, w); err != nil {
		return err
	}
	created := time.Now()

	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort)
	return watch(ctx, watchOptions{
		Node: opts.NodeName, MetricsURL: metricsURL, BackendLog: rel(root, backendLog), Created: created,
		Refresh: refresh, Out: os.Stdout, Terminal: isTerminal(os.Stdout), Why: records.explanations,
		Exited: func() error {
			for _, col := range collectors {
				if col.Exited() {
					return errors.New("a collector exited; see " + rel(root, demoDir) + "/*.log")
				}
			}
			return nil
		},
	})
}

type watchOptions struct {
	Node, MetricsURL, BackendLog string
	Created                      time.Time
	Refresh                      time.Duration
	Out                          io.Writer
	// Terminal redraws the screen in place; otherwise every refresh is appended, and each count
	// change is also written as it is seen, so a log of the run keeps the timings.
	Terminal bool
	Exited   func() error
	// Why returns the explanation of each container's latest kill.
	Why func() map[containerKey]explanation
}

// watch reads the exporter every Refresh and redraws the table until ctx ends.
func watch(ctx context.Context, o watchOptions) error {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(o.Refresh)
	defer tick.Stop()
	counts := map[containerKey]float64{}
	firstOOM := map[containerKey]time.Duration{}
	var changes []change
	for {
		if err := o.Exited(); err != nil {
			return err
		}
		rows, err := scrape(ctx, client, o.MetricsURL)
		if ctx.Err() != nil {
			return nil
		}
		elapsed := time.Since(o.Created)
		if err == nil {
			fresh := countChanges(counts, rows, elapsed)
			for _, c := range fresh {
				if _, ok := firstOOM[c.Key]; !ok {
					firstOOM[c.Key] = c.At
				}
				if !o.Terminal {
					if _, err := fmt.Fprintln(o.Out, "change:", time.Now().UTC().Format("15:04:05.0"), c); err != nil {
						return err
					}
				}
			}
			changes = append(changes, fresh...)
			counts = oomCounts(rows)
		}
		s := screen{
			Node: o.Node, Elapsed: elapsed, MetricsURL: o.MetricsURL, BackendLog: o.BackendLog,
			Rows: rows, Why: o.Why(), Err: err, Changes: changes, FirstOOM: firstOOM, MaxChanges: 8, ClearScreen: o.Terminal,
		}
		if err := s.render(o.Out); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func startCollector(ctx context.Context, bin, root, config, dir, logPath string, env []string, healthPort int) (*collectorrun.Collector, error) {
	cfg, err := os.ReadFile(filepath.Join(root, "testdata", "config", config))
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The file stays open for the process's lifetime: the child holds its own descriptor.
	defer func() { _ = logFile.Close() }()
	return collectorrun.Start(hctx, collectorrun.Options{
		Binary: bin, Config: string(cfg), Dir: dir, Env: env, Log: logFile,
		HealthURL: fmt.Sprintf("http://127.0.0.1:%d/", healthPort),
	})
}

func requireFiles(paths ...string) error {
	var missing []error
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, fmt.Errorf("%s is missing", p))
		}
	}
	return errors.Join(missing...)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}

// prefixWriter indents the cluster's progress lines under the demo's own.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "   %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}
