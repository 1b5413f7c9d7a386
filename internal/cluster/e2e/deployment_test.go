// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/packaging/dashboard"
	"github.com/oomwatch/oomwatch/internal/packaging/deployconfig"
	"github.com/oomwatch/oomwatch/internal/packaging/kustomize"
	"github.com/oomwatch/oomwatch/internal/testing/collectorrun"
	"github.com/oomwatch/oomwatch/internal/testing/promserver"
	"github.com/oomwatch/oomwatch/internal/testing/testcerts"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// otlpCerts are the files of mutual TLS between the agents and the gateway, made by the test: a
// CA, a serving certificate for the gateway's addresses and a client certificate for the agents.
type otlpCerts struct {
	ca                    *testcerts.CA
	caFile                string
	serverCert, serverKey string
}

func makeOTLPCerts(t *testing.T, ips ...string) otlpCerts {
	t.Helper()
	dir := t.TempDir()
	c := otlpCerts{ca: testcerts.NewCA(t, "oomwatch-otlp-ca")}
	c.caFile = c.ca.WriteCert(t, dir, "ca.crt")
	addrs := make([]net.IP, len(ips))
	for i, ip := range ips {
		addrs[i] = net.ParseIP(ip)
	}
	c.serverCert, c.serverKey = c.ca.Issue(t, dir, "gateway", x509.ExtKeyUsageServerAuth, addrs...)
	return c
}

// roundRobin is what a Service does for the agents' OTLP connections: each new connection goes
// to the next gateway replica that accepts it.
type roundRobin struct {
	ln       net.Listener
	backends []string
	mu       sync.Mutex
	next     int
	served   map[string]int
}

func startRoundRobin(t *testing.T, backends ...string) *roundRobin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rr := &roundRobin{ln: ln, backends: backends, served: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { rr.serve(c) })
		}
	})
	return rr
}

func (rr *roundRobin) addr() string { return rr.ln.Addr().String() }

// serve relays one connection to the first replica, from the next in turn, that accepts it.
func (rr *roundRobin) serve(c net.Conn) {
	defer c.Close()
	rr.mu.Lock()
	start := rr.next
	rr.next = (rr.next + 1) % len(rr.backends)
	rr.mu.Unlock()
	var up net.Conn
	for i := range rr.backends {
		b := rr.backends[(start+i)%len(rr.backends)]
		var err error
		if up, err = net.DialTimeout("tcp", b, time.Second); err == nil {
			rr.mu.Lock()
			rr.served[b]++
			rr.mu.Unlock()
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	relay := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go relay(up, c)
	go relay(c, up)
	<-done
	<-done
}

func (rr *roundRobin) connections() map[string]int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	out := make(map[string]int, len(rr.served))
	for k, v := range rr.served {
		out[k] = v
	}
	return out
}

// gatewayReplica is one replica of deploy/gateway's collector, run on the host with the shipped
// configuration: it listens on its own loopback address, as a pod has its own IP.
type gatewayReplica struct {
	t    *testing.T
	ip   string
	env  []string
	dir  string
	proc *collectorrun.Collector
}

// startGatewayReplica runs a replica of the shipped gateway that writes the counters to
// remoteWrite and, with deploy/gateway/components/prometheus-otlp, also to otlpMetrics.
func startGatewayReplica(t *testing.T, ip, remoteWrite, otlpMetrics, logs string, certs otlpCerts) *gatewayReplica {
	t.Helper()
	g := &gatewayReplica{
		t:   t,
		ip:  ip,
		dir: filepath.Join(t.TempDir(), "gateway-"+ip),
		env: []string{
			"POD_IP=" + ip, "PROMETHEUS_REMOTE_WRITE_URL=" + remoteWrite, "PROMETHEUS_OTLP_URL=" + otlpMetrics,
			"LOGS_OTLP_ENDPOINT=" + logs,
			"TLS_CERT_FILE=" + certs.serverCert, "TLS_KEY_FILE=" + certs.serverKey, "TLS_CLIENT_CA_FILE=" + certs.caFile,
		},
	}
	g.start()
	t.Cleanup(func() { g.stop() })
	return g
}

func (g *gatewayReplica) otlp() string { return net.JoinHostPort(g.ip, "4317") }

func (g *gatewayReplica) start() {
	g.t.Helper()
	s := need(g.t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	g.proc, err = collectorrun.Start(ctx, collectorrun.Options{
		Binary:    s.collector,
		Config:    shippedGatewayConfig(g.t),
		Overrides: []string{otlpComponentConfig(g.t), bothMetricsBackends},
		Dir:       g.dir,
		Env:       g.env,
		HealthURL: "http://" + net.JoinHostPort(g.ip, "13133") + "/",
		Log:       testlog.Prefixed("gateway " + g.ip + ": "),
	})
	require.NoError(g.t, err)
}

func (g *gatewayReplica) stop() {
	if g.proc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	assert.NoError(g.t, g.proc.Stop(ctx))
	g.proc = nil
}

// deploymentKills counts, from the API server, the OOM kills of every pod of a Deployment:
// each OOMKilled termination once, whichever form of the status shows it.
type deploymentKills struct {
	mu   sync.Mutex
	seen map[string]bool
}

func watchDeploymentKills(t *testing.T, ns, selector string) *deploymentKills {
	t.Helper()
	s := need(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := s.admin.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	k := &deploymentKills{seen: map[string]bool{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Error {
				continue
			}
			k.mu.Lock()
			for _, st := range allStatuses(p) {
				for _, term := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
					if term != nil && term.Reason == "OOMKilled" {
						k.seen[string(p.UID)+"/"+term.ContainerID] = true
					}
				}
			}
			k.mu.Unlock()
		}
	}()
	return k
}

func (k *deploymentKills) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.seen)
}

func shippedGatewayConfig(t *testing.T) string {
	t.Helper()
	b, err := deploy.Manifests.ReadFile("gateway/config.yaml")
	require.NoError(t, err)
	return string(b)
}

// otlpComponentConfig is what deploy/gateway/components/prometheus-otlp adds to the gateway's
// configuration.
func otlpComponentConfig(t *testing.T) string {
	t.Helper()
	cfg, err := deployconfig.GatewayPrometheusOTLP()
	require.NoError(t, err)
	return cfg
}

// bothMetricsBackends has the test's gateway write the counters both ways, with the component's
// exporter and the base's: one run shows the same kills in Prometheus 2 over remote write and in
// Prometheus 3 over OTLP.
const bothMetricsBackends = `service:
  pipelines:
    metrics:
      exporters: [prometheus_remote_write, otlp_http/prometheus]
`

// overlay writes the kustomization a user of this cluster would keep next to deploy/: the
// agent on the host network (the cluster has a loopback-only pod network, no kube-proxy and
// no DNS), the API server and the gateway at their host addresses, and the agent's state in
// the test's folder, and the agent's client certificate as the Secret the DaemonSet mounts.
func overlay(t *testing.T, root, otlp, stateDir string, certs otlpCerts, components ...string) string {
	t.Helper()
	s := need(t)
	dir := t.TempDir()
	patch := fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: oomwatch-agent
  namespace: oomwatch
spec:
  template:
    spec:
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      nodeSelector:
        kubernetes.io/hostname: %[1]s
      containers:
        - name: otelcol
          env:
            - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
            - {name: KUBERNETES_SERVICE_PORT, value: "%[2]d"}
            - {name: OTLP_ENDPOINT, value: "%[3]s"}
      volumes:
        - name: state
          hostPath: {path: %[4]s, type: DirectoryOrCreate}
`, s.realNode, s.cluster.Options().APIServerPort, otlp, stateDir)
	// kustomize takes a base only by a path relative to the overlay.
	base, err := filepath.Rel(dir, filepath.Join(root, "deploy"))
	require.NoError(t, err)
	var comps strings.Builder
	if len(components) > 0 {
		comps.WriteString("components:\n")
		for _, c := range components {
			rel, err := filepath.Rel(dir, filepath.Join(root, "deploy", "components", c))
			require.NoError(t, err)
			comps.WriteString("  - " + rel + "\n")
		}
	}
	kust := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
%spatches:
  - path: local.yaml
secretGenerator:
  - name: oomwatch-agent-tls
    namespace: oomwatch
    files: [ca.crt, tls.crt, tls.key]
    options: {disableNameSuffixHash: true}
`, base, comps.String())
	// The Secret's keys: ca.crt, tls.crt and tls.key.
	certs.ca.WriteCert(t, dir, "ca.crt")
	certs.ca.Issue(t, dir, "tls", x509.ExtKeyUsageClientAuth)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "local.yaml"), []byte(patch), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o600))
	return dir
}

// importCollectorImage imports the image make image writes into the node's containerd, and
// returns the repository's root.
func importCollectorImage(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	archive := filepath.Join(root, "_build", "image", "otelcol-oomwatch.tar")
	if _, err := os.Stat(archive); err != nil {
		t.Fatalf("the collector image is not built (make image): %v", err)
	}
	require.NoError(t, need(t).cluster.ImportImage(context.Background(), archive))
	return root
}

// applyAgent builds the kustomize overlay in dir and applies it; the agent's DaemonSet is
// deleted at cleanup.
func applyAgent(t *testing.T, dir string) {
	t.Helper()
	s := need(t)
	manifest, err := kustomize.Build(dir)
	require.NoError(t, err)
	require.NoError(t, s.cluster.Apply(context.Background(), manifest))
	t.Cleanup(func() {
		_ = s.admin.AppsV1().DaemonSets("oomwatch").Delete(context.Background(), "oomwatch-agent", metav1.DeleteOptions{})
	})
}

// agentPod waits for the one Ready agent pod of the DaemonSet on the real node that is not
// old, and returns it.
func agentPod(t *testing.T, old types.UID, within time.Duration) *corev1.Pod {
	t.Helper()
	s := need(t)
	var pod *corev1.Pod
	require.Eventually(t, func() bool {
		pods, err := s.admin.CoreV1().Pods("oomwatch").List(context.Background(), metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=oomwatch-agent",
		})
		if err != nil {
			return false
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.UID == old || p.DeletionTimestamp != nil || p.Spec.NodeName != s.realNode {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					pod = p
					return true
				}
			}
		}
		return false
	}, within, time.Second, "no Ready agent pod (other than %s) on %s", old, s.realNode)
	return pod
}

func memhogDeployment(ns string) *appsv1.Deployment {
	labels := map[string]string{"app": "memhog"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "memhog", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers:                    []corev1.Container{leaker("hog")},
				},
			},
		},
	}
}

func steadyDeployment(ns string) *appsv1.Deployment {
	d := memhogDeployment(ns)
	d.Name = "steady"
	d.Spec.Selector.MatchLabels = map[string]string{"app": "steady"}
	d.Spec.Template.Labels = map[string]string{"app": "steady"}
	d.Spec.Template.Spec.Containers = []corev1.Container{workload("app", "64Mi", map[string]string{"WORKLOAD_MB": "8"})}
	return d
}

// checkKillRecords queries VictoriaLogs as its users do (LogsQL) for the kill records the
// gateway sent it: one k8s.container.oom_kill record per kill of memhog the API server showed,
// each with the workload, the limit, the exit code, the restart count of the killed instance and,
// where one was read, the last working set; and the forker's k8s.container.process.oom_kill records, whose
// counts add up to the kernel's.
func checkKillRecords(t *testing.T, logs *logsServer, kills int, processKills uint64) {
	t.Helper()
	const memhog = `event_name:="k8s.container.oom_kill" AND "k8s.deployment.name":="memhog"`
	var records []map[string]string
	require.Eventually(t, func() bool {
		var err error
		records, err = logs.query(memhog)
		return err == nil && len(records) >= kills
	}, time.Minute, time.Second, "VictoriaLogs: fewer than %d records of memhog's kills", kills)
	// Nothing more arrives later.
	time.Sleep(3 * time.Second)
	records, err := logs.query(memhog)
	require.NoError(t, err)
	require.Len(t, records, kills, "one record per kill")
	instances := map[string]bool{}
	withWorkingSet := 0
	for _, r := range records {
		assert.Equal(t, "shop", r["k8s.namespace.name"])
		assert.Equal(t, "hog", r["k8s.container.name"])
		assert.Equal(t, strconv.FormatInt(bytesOf("64Mi"), 10), r["k8s.container.memory.limit"])
		assert.Equal(t, "137", r["process.exit.code"])
		assert.NotEmpty(t, r["k8s.container.restart_count"])
		instances[r["k8s.pod.uid"]+"/"+r["k8s.container.restart_count"]] = true
		// memhog reaches its limit within 2 s of starting, so a scrape every 10 s rarely reads
		// an instance's working set before its kill; where one did, it is below the limit.
		if ws := r["container.memory.working_set"]; ws != "" {
			withWorkingSet++
			n, err := strconv.ParseInt(ws, 10, 64)
			require.NoError(t, err)
			assert.LessOrEqual(t, n, bytesOf("64Mi"))
			assert.NotEmpty(t, r["container.memory.working_set.age"])
		}
	}
	assert.Len(t, instances, kills, "each record is of another killed instance")
	t.Logf("VictoriaLogs: %d records of memhog's %d kills, %d with the last working set", len(records), kills, withWorkingSet)

	forker, err := logs.query(`event_name:="k8s.container.process.oom_kill" AND "k8s.deployment.name":="forker"`)
	require.NoError(t, err)
	var counted uint64
	for _, r := range forker {
		n, err := strconv.ParseUint(r["k8s.container.process.oom_kill.count"], 10, 64)
		require.NoError(t, err, "%v", r)
		counted += n
	}
	assert.Equal(t, processKills, counted, "the forker's process kill records add up to the kernel's count (%d records)", len(forker))
}

// checkDashboard runs the queries of deploy/grafana/oomwatch.json's panels as Grafana does
// (variables at All), each one's highest value per series over the last hour: memhog's kills
// and, where it was read running, its memory against its limit, a series for the forker's process
// kills, one for the node's system OOM kills, and no kill for steady.
func checkDashboard(t *testing.T, prom *promserver.Server, node string, firstValueCounted bool) {
	t.Helper()
	b, err := deploy.Manifests.ReadFile("grafana/oomwatch.json")
	require.NoError(t, err)
	panels, err := dashboard.Panels(b, nil)
	require.NoError(t, err)
	shown := map[int]map[string]float64{}
	for _, p := range panels {
		require.Len(t, p.Queries, 1, p.Title)
		got, err := prom.Instant("max_over_time((" + p.Queries[0] + ")[1h:10s])")
		require.NoError(t, err, p.Title)
		shown[p.ID] = map[string]float64{}
		for _, s := range got {
			key := s.Labels["workload"]
			if key == "" {
				key = s.Labels["k8s_node_name"]
			}
			shown[p.ID][key] = max(shown[p.ID][key], s.Value)
		}
		t.Logf("panel %d %q: %v", p.ID, p.Title, shown[p.ID])
	}
	require.Len(t, shown, 4)
	assert.GreaterOrEqual(t, shown[1]["deployment/memhog"], 1.0, "containers OOM-killed: memhog")
	assert.Zero(t, shown[1]["deployment/steady"], "containers OOM-killed: steady")
	assert.Contains(t, shown[2], "deployment/forker", "processes OOM-killed: the forker")
	if firstValueCounted {
		assert.GreaterOrEqual(t, shown[2]["deployment/forker"], 1.0, "processes OOM-killed: the forker's burst")
	}
	assert.Contains(t, shown[3], node, "system OOM kills: the node")
	// memhog reaches its limit within 2 s of starting: whether a scrape every 10 s read one of its
	// instances running is chance. Where one did, the panel shows it.
	read, err := prom.Instant(`max(max_over_time(k8s_container_memory_limit_utilization_ratio{k8s_deployment_name="memhog"}[1h]))`)
	require.NoError(t, err)
	if len(read) == 1 {
		assert.Positive(t, shown[4]["deployment/memhog"], "memory against the limit: memhog, read running")
		assert.LessOrEqual(t, shown[4]["deployment/memhog"], read[0].Value+1e-9, "memory against the limit: no more than was read")
	} else {
		assert.NotContains(t, shown[4], "deployment/memhog", "memory against the limit: memhog, never read running")
	}
	t.Logf("memhog's memory against its limit, read running: %v", read)
	assert.NotContains(t, shown[4], "deployment/steady", "memory against the limit: only workloads with a kill")
	assert.NotContains(t, shown[4], "deployment/forker", "memory against the limit: only workloads with a container killed")
}

// logAgent logs the tail of an agent pod's log.
func logAgent(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	s := need(t)
	tailLines := int64(60)
	b, err := s.admin.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "otelcol", TailLines: &tailLines}).DoRaw(context.Background())
	t.Logf("agent %s log (tail, %v):\n%s", pod.Name, err, b)
}

// forkerChildren is how many children forkerDeployment's PID 1 starts, each OOM-killed within
// about 0.2 s of the one before: more than the kernel reports in 5 s (10), so the kubelet's
// /metrics/cadvisor would miss some.
const forkerChildren = 16

// forkerDeployment runs a container whose PID 1 lives while forkerChildren of its children are
// OOM-killed fast, one after another: process kills, which only the agent's cgroup source counts
// exactly.
func forkerDeployment(ns string) *appsv1.Deployment {
	d := memhogDeployment(ns)
	d.Name = "forker"
	d.Spec.Selector.MatchLabels = map[string]string{"app": "forker"}
	d.Spec.Template.Labels = map[string]string{"app": "forker"}
	d.Spec.Template.Spec.Containers = []corev1.Container{workload("app", "16Mi", map[string]string{
		"WORKLOAD_MODE": "child-oom", "WORKLOAD_CHILDREN": strconv.Itoa(forkerChildren), "WORKLOAD_INTERVAL": "1ms",
	})}
	return d
}

// promValue is the single value of a PromQL query, or an error saying what it returned.
func promValue(p *promserver.Server, query string) (float64, error) {
	got, err := p.Instant(query)
	if err != nil {
		return 0, err
	}
	if len(got) != 1 {
		return 0, fmt.Errorf("%s: %d samples", query, len(got))
	}
	return got[0].Value, nil
}

// TestDeployedAgentCountsEveryKillOfADeployment is oomwatch as a user runs it: the image that
// make image writes, imported into the node's containerd; deploy/ applied with kustomize and
// server-side apply; the DaemonSet controller runs the agent on the real node; two gateway
// replicas behind one address push to Prometheus, which evaluates the shipped alert rules.
// The kernel OOM-kills a Deployment's container again and again while one gateway replica and
// then the other goes away and the agent is rolled out: the backend's counter equals the kills
// the API server shows and never goes back, and the shipped alert fires for that workload only
// and resolves once the kills stop. Beside it, a burst of process kills inside a living
// container: the agent reads them from the node's cgroups through the DaemonSet's read-only
// mount, as user 65532, and the backend shows exactly the kernel's count.
func TestDeployedAgentCountsEveryKillOfADeployment(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	root := importCollectorImage(t)

	rules := []string{filepath.Join(root, "deploy", "prometheus", "rules.yaml")}
	prom := startPrometheusWith(t, promOptions{rules: rules, remoteWrite: true})
	prom3 := startPrometheusWith(t, promOptions{rules: rules, otlp: true})
	backends := []struct {
		name string
		*promserver.Server
	}{{"Prometheus 2 (remote write)", prom}, {"Prometheus 3 (OTLP)", prom3}}
	logs := startVictoriaLogs(t)
	// The agent reaches the gateway through the round robin at 127.0.0.1, and checks that name.
	certs := makeOTLPCerts(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	gateways := []*gatewayReplica{
		startGatewayReplica(t, "127.0.0.2", prom.URL+"/api/v1/write", prom3.URL+"/api/v1/otlp/v1/metrics", logs.otlpLogs(), certs),
		startGatewayReplica(t, "127.0.0.3", prom.URL+"/api/v1/write", prom3.URL+"/api/v1/otlp/v1/metrics", logs.otlpLogs(), certs),
	}
	service := startRoundRobin(t, gateways[0].otlp(), gateways[1].otlp())

	applyAgent(t, overlay(t, root, service.addr(), filepath.Join(s.dir, "agent-state"), certs))
	began := time.Now()
	first := agentPod(t, "", 3*time.Minute)
	t.Logf("agent pod %s Ready on %s in %s", first.Name, first.Spec.NodeName, time.Since(began).Round(time.Second))

	ns := namespace(t, "shop")
	kills := watchDeploymentKills(t, ns, "app=memhog")
	for _, d := range []*appsv1.Deployment{steadyDeployment(ns), memhogDeployment(ns), forkerDeployment(ns)} {
		_, err := s.admin.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		_ = s.admin.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	})

	const counted = `sum(k8s_container_oom_kills_total{k8s_deployment_name="memhog"})`
	// waitCounted waits for one more kill than at least, and for the backend to show every
	// kill the API server shows.
	waitCounted := func(atLeast int, what string) int {
		t.Helper()
		var n int
		require.Eventually(t, func() bool {
			n = kills.count()
			if n <= atLeast {
				return false
			}
			for _, b := range backends {
				if v, err := promValue(b.Server, counted); err != nil || int(v) != n {
					return false
				}
			}
			return true
		}, 4*time.Minute, time.Second, "%s: the backends do not show the %d kills the API server shows", what, kills.count())
		t.Logf("%s: %d kills, all counted at both backends (%s)", what, n, time.Since(began).Round(time.Second))
		return n
	}
	n := waitCounted(0, "first kill")

	alerts := func(p *promserver.Server, query string) []promserver.Sample {
		got, err := p.Instant(query)
		require.NoError(t, err)
		return got
	}
	for _, b := range backends {
		require.Eventually(t, func() bool {
			return len(alerts(b.Server, `ALERTS{alertname="KubernetesWorkloadOOMKilled",alertstate="firing",workload="deployment/memhog"}`)) == 1
		}, time.Minute, time.Second, "%s: the OOM-kill alert does not fire for deployment/memhog", b.name)
	}

	// A gateway replica goes away, then the other: the agent's connection moves between them.
	gateways[0].stop()
	n = waitCounted(n, "gateway replica 1 gone")
	gateways[0].start()
	gateways[1].stop()
	n = waitCounted(n, "gateway replica 2 gone")
	gateways[1].start()

	// A rollout of the agent, as `kubectl rollout restart` does it.
	restart := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	_, err := s.admin.AppsV1().DaemonSets("oomwatch").Patch(ctx, "oomwatch-agent", types.StrategicMergePatchType, []byte(restart), metav1.PatchOptions{})
	require.NoError(t, err)
	second := agentPod(t, first.UID, 3*time.Minute)
	t.Logf("agent rolled out: %s replaced %s", second.Name, first.Name)
	n = waitCounted(n, "after the agent's rollout")

	// The kills stop.
	_, err = s.admin.AppsV1().Deployments(ns).Patch(ctx, "memhog", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	stopped := time.Now()
	require.Eventually(t, func() bool {
		pods, err := s.admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=memhog"})
		return err == nil && len(pods.Items) == 0
	}, time.Minute, time.Second)
	final := kills.count()
	require.GreaterOrEqual(t, final, n)
	for _, b := range backends {
		checkBackend(t, b.name, b.Server, final)
	}
	t.Logf("gateway connections: %v", service.connections())

	// The process kills: the backends show the kernel's own count of the forker's container.
	forker, err := s.admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=forker"})
	require.NoError(t, err)
	require.Len(t, forker.Items, 1)
	require.Len(t, forker.Items[0].Status.ContainerStatuses, 1)
	forkerStatus := forker.Items[0].Status.ContainerStatuses[0]
	require.Zero(t, forkerStatus.RestartCount, "the forker's PID 1 lives")
	kernel := kernelOOMKills(t, string(forker.Items[0].UID), forkerStatus.ContainerID)
	require.GreaterOrEqual(t, kernel, uint64(forkerChildren), "every child OOM-killed")
	const forkerKills = `sum(k8s_container_process_oom_kills_total{k8s_deployment_name="forker"})`
	for _, b := range backends {
		var shown float64
		var shownErr error
		if !assert.Eventually(t, func() bool {
			shown, shownErr = promValue(b.Server, forkerKills)
			return shownErr == nil && uint64(shown) == kernel
		}, time.Minute, time.Second, "%s does not show the kernel's %d process kills", b.name, kernel) {
			t.Logf("%s's last answer: %v, %v", b.name, shown, shownErr)
			logAgent(t, second)
			t.FailNow()
		}
		v, err := promValue(b.Server, `sum(k8s_container_oom_kills_total{k8s_deployment_name="forker"})`)
		require.NoError(t, err)
		assert.Equal(t, 0.0, v, "%s: the forker's container was never OOM-killed itself", b.name)
	}
	if v, err := promValue(prom, `sum(k8s_container_process_oom_kills_total{k8s_deployment_name="memhog"})`); err == nil {
		t.Logf("process kills the backend shows for memhog (PID 1 killed each time): %v", v)
	}

	// The alert resolves by itself once the kills are out of its window.
	for _, b := range backends {
		require.Eventually(t, func() bool {
			return len(alerts(b.Server, `ALERTS{alertname="KubernetesWorkloadOOMKilled",workload="deployment/memhog"}`)) == 0
		}, 8*time.Minute, 5*time.Second, "%s: the OOM-kill alert for deployment/memhog does not resolve", b.name)
		t.Logf("%s: alert resolved %s after the kills stopped", b.name, time.Since(stopped).Round(time.Second))
		others := alerts(b.Server, `count_over_time(ALERTS{alertname=~"KubernetesWorkload.*",workload!~"deployment/(memhog|forker)"}[1h])`)
		assert.Empty(t, others, "%s: alerts for workloads that were not OOM-killed", b.name)
	}

	// The kill records in the logs backend: one per kill, with what explains it.
	checkKillRecords(t, logs, final, kernel)

	// The dashboard's panels, as Grafana asks Prometheus for them (every cluster and namespace),
	// over the hour: each shows the series the kills made. Prometheus 3 counts a counter's first
	// value (created-timestamp-zero-ingestion), so it also shows the forker's burst, which
	// Prometheus 2 saw only as a counter's first value.
	checkDashboard(t, prom, s.realNode, false)
	checkDashboard(t, prom3, s.realNode, true)

	// A kill warns; memhog's kills repeated, which paged; the forker's kills were of processes
	// inside its living container, and nothing else. The forker's process-kill alert fires where
	// the backend counts a counter's first value: in Prometheus 3. In Prometheus 2 it fires only if
	// a reading of the counter at 0 came before the burst.
	for _, b := range backends {
		fired := func(workload string) map[string]string {
			got := map[string]string{}
			for _, a := range alerts(b.Server, `max by (alertname, severity) (max_over_time(ALERTS{alertstate="firing",workload="`+workload+`"}[1h]))`) {
				got[a.Labels["alertname"]] = a.Labels["severity"]
			}
			return got
		}
		assert.Equal(t, map[string]string{
			"KubernetesWorkloadOOMKilled":           "warning",
			"KubernetesWorkloadOOMKilledRepeatedly": "critical",
		}, fired("deployment/memhog"), b.name)
		forkerAlerts := fired("deployment/forker")
		t.Logf("%s: the forker's alerts: %v", b.name, forkerAlerts)
		if b.Server == prom3 {
			assert.Equal(t, map[string]string{"KubernetesWorkloadProcessOOMKilled": "warning"}, forkerAlerts, b.name)
			continue
		}
		if severity, ok := forkerAlerts["KubernetesWorkloadProcessOOMKilled"]; ok {
			assert.Equal(t, "warning", severity)
			delete(forkerAlerts, "KubernetesWorkloadProcessOOMKilled")
		}
		assert.Empty(t, forkerAlerts, "the forker's alerts other than its process kills'")
	}
}

// checkBackend checks what one backend shows once memhog's kills have stopped: all final kills,
// no counter that went back, one series for memhog's container across the agent's rollout and
// the gateway replicas, and no kill for steady.
func checkBackend(t *testing.T, name string, p *promserver.Server, final int) {
	t.Helper()
	const counted = `sum(k8s_container_oom_kills_total{k8s_deployment_name="memhog"})`
	require.Eventually(t, func() bool {
		v, err := promValue(p, counted)
		return err == nil && int(v) == final
	}, time.Minute, time.Second, "%s does not show the %d kills", name, final)
	resets, err := p.Instant(`resets(k8s_container_oom_kills_total[1h]) > 0`)
	require.NoError(t, err)
	assert.Empty(t, resets, "%s: counter resets", name)
	series, err := p.Instant(`count(k8s_container_oom_kills_total{k8s_deployment_name="memhog"})`)
	require.NoError(t, err)
	require.Len(t, series, 1, name)
	assert.Equal(t, 1.0, series[0].Value, "%s: one series for memhog's one container, across the rollout", name)
	steady, err := promValue(p, `sum(k8s_container_oom_kills_total{k8s_deployment_name="steady"})`)
	require.NoError(t, err)
	assert.Equal(t, 0.0, steady, "%s: steady was never OOM-killed", name)
}
