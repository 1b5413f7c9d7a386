// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2node

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
	"github.com/oomwatch/oomwatch/internal/testing/otlpsink"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// The OOM kill tests share one control plane and one v2 node, booted again only when a test
// needs the kubelet configured otherwise (singleProcessOOMKill). On each boot the collector, the
// agent, runs in the guest as a hostNetwork pod of the node: the distribution's static binary
// from the host's root (the guest's root is an overlay of it), the guest's /sys/fs/cgroup mounted
// read-only for the cgroup source, the kubelet at https://127.0.0.1:10250, and a token of
// deploy/'s agent service account. It runs two k8s_container receivers, one per process-kill
// source, each in a pipeline of its own with its own oom_counter and OTLP exporter; each
// exporter reaches an OTLP backend (otlpsink) on the host through a guestfwd of the node. The
// cgroup source's metrics are also served by a Prometheus exporter, which a test's Prometheus on
// the host scrapes through a hostfwd.

// agentInterval is the agents' collection interval: under TCG a scrape of the kubelet takes a
// good part of a second.
const agentInterval = 3 * time.Second

// agentPrometheusPort is the guest's port of the agent's Prometheus exporter, which serves the
// cgroup source's metrics with the labels deploy/prometheus/rules.yaml needs.
const agentPrometheusPort = 18889

// agentUID is the collector's user: runAsUser of deploy/daemonset.yaml.
const agentUID = 65532

// The process-kill sources; each has its own pipeline and backend.
const (
	sourceCgroup  = "cgroup"
	sourceKubelet = "kubelet"
)

var sources = []string{sourceCgroup, sourceKubelet}

// sourceKernelLog names the backend of a second agent, root and privileged as
// deploy/components/kernel-log runs it, whose receiver reads the cgroups and the kernel's log:
// its kill records name the victim.
const sourceKernelLog = "cgroup+kernel_log"

// shared is the control plane and node the OOM kill tests use; nil until the first of them.
var shared *suite

var packageBegan = time.Now()

type suite struct {
	cpOpts controlplane.Options
	cp     *controlplane.Cluster
	cs     kubernetes.Interface
	// token is a bound token of deploy/'s agent service account.
	token string
	// collector is the distribution's binary on the host (and, at the same path, in the guest).
	collector string
	// sinks are the OTLP backends by source, with the guest port that reaches each.
	sinks      map[string]*otlpsink.Sink
	guestPorts map[string]int
	// promPort is the host's port of the agent's Prometheus exporter (the cgroup source's
	// counters), forwarded to agentPrometheusPort in the guest.
	promPort int

	node     *Node
	nodeOpts Options
	kubelet  kubeletConfig
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		stopShared(os.Stderr)
	}
	if os.Getenv("OOMWATCH_E2E") == "1" {
		fmt.Fprintf(os.Stderr, "v2node: the package's tests took %s\n", time.Since(packageBegan).Round(10*time.Millisecond))
	}
	os.Exit(code)
}

// stopShared tears down the shared node and control plane, if they run.
func stopShared(log io.Writer) {
	s := shared
	if s == nil {
		return
	}
	shared = nil
	began := time.Now()
	for _, sink := range s.sinks {
		_ = sink.Stop(context.Background())
	}
	if err := Teardown(s.nodeOpts, s.cpOpts.ModuleDir); err != nil {
		_, _ = fmt.Fprintln(log, "v2node: node teardown:", err)
	}
	if err := controlplane.Teardown(context.Background(), s.cpOpts); err != nil {
		_, _ = fmt.Fprintln(log, "v2node: control plane teardown:", err)
	}
	_, _ = fmt.Fprintf(log, "v2node: shared node and control plane torn down in %s\n", time.Since(began).Round(10*time.Millisecond))
}

// kubeletConfig is how the node's kubelet is configured beyond the defaults.
type kubeletConfig struct {
	singleProcess bool
	// systemReserved is the kubelet's systemReserved memory, "" for none.
	systemReserved string
}

func (k kubeletConfig) String() string {
	return fmt.Sprintf("singleProcessOOMKill %v, systemReserved memory %q", k.singleProcess, k.systemReserved)
}

// nodeWith returns the shared suite with the node running, its kubelet configured with
// singleProcessOOMKill as asked, and the agent running on it.
func nodeWith(t *testing.T, singleProcess bool) *suite {
	t.Helper()
	return nodeWithKubelet(t, kubeletConfig{singleProcess: singleProcess})
}

// nodeWithKubelet returns the shared suite with the node running, its kubelet configured as
// asked, and the agent running on it. The first call starts the control plane; a call with
// another kubelet configuration boots the node again.
func nodeWithKubelet(t *testing.T, kubelet kubeletConfig) *suite {
	t.Helper()
	if os.Getenv("OOMWATCH_E2E") != "1" {
		t.Skip("set OOMWATCH_E2E=1 (as root, after `make collector cluster-bin cluster-deps` and make v2-node-kernel) to run the cgroup v2 node in QEMU")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if shared == nil {
		s, err := startSuite(ctx, t)
		if err != nil {
			// A control plane started halfway is torn down with the rest at the end.
			t.Fatalf("setting up the control plane: %v", err)
		}
		_ = s
	}
	s := shared
	if s.node != nil && s.kubelet == kubelet {
		return s
	}
	if s.node != nil {
		began := time.Now()
		// The next kubelet registers the same node and would run the pods left on it; the
		// Node object goes too, or its last Ready condition would say the next kubelet is.
		deleteNodePods(ctx, t, s)
		require.NoError(t, s.node.Stop())
		require.NoError(t, s.cs.CoreV1().Nodes().Delete(ctx, s.nodeOpts.NodeName, metav1.DeleteOptions{}))
		s.node = nil
		t.Logf("node stopped for a kubelet with %s: %s", kubelet, time.Since(began).Round(10*time.Millisecond))
	}
	s.bootNode(ctx, t, kubelet)
	return s
}

func startSuite(ctx context.Context, t *testing.T) (*suite, error) {
	began := time.Now()
	cpOpts, err := controlplane.Options{Log: testlog.Prefixed("cluster: ")}.Defaults()
	if err != nil {
		return nil, err
	}
	if err := Check(Options{}, cpOpts.ModuleDir); err != nil {
		t.Skipf("the v2 node cannot run here: %v", err)
	}
	s := &suite{cpOpts: cpOpts, sinks: map[string]*otlpsink.Sink{}, guestPorts: map[string]int{}}
	s.collector = filepath.Join(cpOpts.ModuleDir, "_build", "otelcol-oomwatch", "otelcol-oomwatch")
	if bin := os.Getenv("OOMWATCH_COLLECTOR"); bin != "" {
		s.collector = bin
	}
	if _, err := os.Stat(s.collector); err != nil {
		return nil, fmt.Errorf("the collector is not built (make collector): %w", err)
	}
	shared = s
	if s.cp, err = controlplane.Start(ctx, cpOpts); err != nil {
		return nil, err
	}
	if s.cs, err = s.cp.Client(); err != nil {
		return nil, err
	}
	// Collectors on the kubelet's process-kill source need the role components/kubelet-source adds.
	for _, f := range []string{"namespace.yaml", "rbac.yaml", "components/kubelet-source/rbac.yaml"} {
		manifest, err := deploy.Manifests.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := s.cp.Apply(ctx, manifest); err != nil {
			return nil, fmt.Errorf("applying deploy/%s: %w", f, err)
		}
	}
	seconds := int64(time.Hour / time.Second)
	tr, err := s.cs.CoreV1().ServiceAccounts("oomwatch").CreateToken(ctx, "oomwatch-agent",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("the agent's token: %w", err)
	}
	s.token = tr.Status.Token
	for i, src := range append(sources[:len(sources):len(sources)], sourceKernelLog) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		sink := otlpsink.New(fmt.Sprintf("127.0.0.1:%d", port))
		if err := sink.Start(ctx); err != nil {
			return nil, err
		}
		s.sinks[src], s.guestPorts[src] = sink, 14317+i
	}
	if s.promPort, err = freePort(); err != nil {
		return nil, err
	}
	t.Logf("control plane ready, deploy/ applied, backends listening: %s", time.Since(began).Round(10*time.Millisecond))
	return s, nil
}

// bootNode boots the node, waits for it to be Ready and runs the agent on it.
func (s *suite) bootNode(ctx context.Context, t *testing.T, kubelet kubeletConfig) {
	t.Helper()
	began := time.Now()
	s.nodeOpts = Options{
		Log: testlog.Prefixed("v2node: "), SingleProcessOOMKill: kubelet.singleProcess, SystemReservedMemory: kubelet.systemReserved,
		HostForwards: map[int]int{}, GuestForwards: map[int]int{s.promPort: agentPrometheusPort},
	}
	for src, sink := range s.sinks {
		_, port, err := net.SplitHostPort(sink.Endpoint())
		require.NoError(t, err)
		s.nodeOpts.HostForwards[s.guestPorts[src]], err = strconv.Atoi(port)
		require.NoError(t, err)
	}
	n, err := Start(ctx, s.cp, s.nodeOpts)
	require.NoError(t, err)
	s.node, s.kubelet, s.nodeOpts = n, kubelet, n.Options()
	_, err = n.Wait(ctx, "kubelet-started", nil)
	require.NoError(t, err)
	_, ready := waitNode(ctx, t, s.cs, s.nodeOpts.NodeName)
	t.Logf("node booted (%s) and Ready: %s", kubelet, ready.Sub(began).Round(10*time.Millisecond))

	require.NoError(t, s.writeAgentConfig())
	agent := s.agentPod()
	created, err := s.cs.CoreV1().Pods(agent.Namespace).Create(ctx, agent, metav1.CreateOptions{})
	require.NoError(t, err)
	kernelLogAgent := s.agentPodWith("oomwatch-agent-kernel-log", "config-kernel-log.yaml", true)
	_, err = s.cs.CoreV1().Pods(kernelLogAgent.Namespace).Create(ctx, kernelLogAgent, metav1.CreateOptions{})
	require.NoError(t, err)
	// The agent reports its own container once it runs: both pipelines are up.
	match := map[string]string{"k8s.pod.uid": string(created.UID)}
	require.Eventuallyf(t, func() bool {
		if p, err := s.cs.CoreV1().Pods(agent.Namespace).Get(ctx, agent.Name, metav1.GetOptions{}); err == nil && p.Status.Phase == corev1.PodFailed {
			return true // reported below
		}
		for _, sink := range s.sinks {
			if _, ok := sink.Latest("k8s.container.oom_kills", match); !ok {
				return false
			}
		}
		return true
	}, 3*time.Minute, 100*time.Millisecond, "the agent's pipelines did not report; see %s", s.agentLog())
	for _, pod := range []*corev1.Pod{agent, kernelLogAgent} {
		p, err := s.cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		require.NoError(t, err)
		require.NotEqualf(t, corev1.PodFailed, p.Status.Phase, "%s failed: %+v; see %s", pod.Name, p.Status.ContainerStatuses, filepath.Dir(s.agentLog()))
	}
	t.Logf("node booted to the agent's first reports at both backends: %s", time.Since(began).Round(10*time.Millisecond))
}

// agentDir is the share's folder of the agent's configuration, in the guest; agentLogDir the
// one it writes its log to (the API server cannot reach the kubelet for container logs).
const (
	agentDir    = shareMount + "/agent"
	agentLogDir = shareMount + "/agentlog"
)

// agentLog is the agent's log, on the host.
func (s *suite) agentLog() string { return filepath.Join(s.node.shareDir(), "agentlog", "agent.log") }

func (s *suite) writeAgentConfig() error {
	dir := filepath.Join(s.node.shareDir(), "agent")
	if err := os.MkdirAll(dir, 0o755); err != nil { // the collector's user reads it in the guest
		return err
	}
	logDir := filepath.Join(s.node.shareDir(), "agentlog")
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return err
	}
	if err := os.Chmod(logDir, 0o777); err != nil { // the collector's user writes it in the guest
		return err
	}
	ca, err := os.ReadFile(s.cp.CAFile())
	if err != nil {
		return err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: oomwatch
  cluster:
    server: https://%s:%d
    tls-server-name: %s
    certificate-authority-data: %s
users:
- name: oomwatch-agent
  user:
    token: %s
contexts:
- name: oomwatch
  context: {cluster: oomwatch, user: oomwatch-agent}
current-context: oomwatch
`, guestAPIAddress, guestAPIPort, apiServerName, base64.StdEncoding.EncodeToString(ca), s.token)
	var receivers, processors, exporters, pipelines strings.Builder
	for _, src := range sources {
		receivers.WriteString(s.receiverConfig("k8s_container/"+src, src, false))
		fmt.Fprintf(&processors, "  oom_counter/%s:\n", src)
		fmt.Fprintf(&exporters, `  otlp_grpc/%s:
    endpoint: %s:%d
    tls:
      insecure: true
`, src, guestAPIAddress, s.guestPorts[src])
		metricsExporters := "otlp_grpc/" + src
		if src == sourceCgroup {
			metricsExporters += ", prometheus"
		}
		fmt.Fprintf(&pipelines, `    metrics/%[1]s:
      receivers: [k8s_container/%[1]s]
      processors: [oom_counter/%[1]s, batch]
      exporters: [%[2]s]
`, src, metricsExporters)
		if src == sourceCgroup {
			// The kill records, with the limit each kill hit.
			fmt.Fprintf(&pipelines, `    logs/%[1]s:
      receivers: [k8s_container/%[1]s]
      processors: [batch]
      exporters: [otlp_grpc/%[1]s]
`, src)
		}
	}
	config := fmt.Sprintf(`receivers:
%s
processors:
%s  batch:
    timeout: 100ms

exporters:
%s  prometheus:
    endpoint: 0.0.0.0:%d
    resource_constant_labels:
      included: ["*"]

service:
  telemetry:
    logs:
      output_paths: [%s/agent.log]
    metrics:
      level: none
  pipelines:
%s`, receivers.String(), processors.String(), exporters.String(), agentPrometheusPort, agentLogDir, pipelines.String())
	kernelLogConfig := fmt.Sprintf(`receivers:
%[1]s
processors:
  oom_counter: {}
  batch:
    timeout: 100ms

exporters:
  otlp_grpc:
    endpoint: %[2]s:%[3]d
    tls:
      insecure: true

service:
  telemetry:
    logs:
      output_paths: [%[4]s/agent-kernel-log.log]
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [k8s_container]
      processors: [oom_counter, batch]
      exporters: [otlp_grpc]
    logs:
      receivers: [k8s_container]
      processors: [batch]
      exporters: [otlp_grpc]
`, s.receiverConfig("k8s_container", sourceCgroup, true), guestAPIAddress, s.guestPorts[sourceKernelLog], agentLogDir)
	for name, content := range map[string]string{"kubeconfig": kubeconfig, "config.yaml": config, "config-kernel-log.yaml": kernelLogConfig} {
		// The collector's user reads them in the guest; on the host the run folder is root's.
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// receiverConfig is the k8s_container receiver named name, reading process kills from src and,
// with kernelLog, the guest's kernel log.
func (s *suite) receiverConfig(name, src string, kernelLog bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `  %[1]s:
    collection_interval: %[2]s
    initial_delay: 0s
    auth_type: kubeConfig
    node: %[3]s
    kubelet:
      enabled: true
      endpoint: https://127.0.0.1:10250
      auth_type: kubeConfig
      insecure_skip_verify: true
      timeout: 10s
    process_oom_kills:
      source: %[4]s
`, name, agentInterval, s.nodeOpts.NodeName, src)
	if src == sourceCgroup {
		b.WriteString("      cgroup_root: /host/sys/fs/cgroup\n")
	}
	if kernelLog {
		b.WriteString("    kernel_log:\n      enabled: true\n")
	}
	return b.String()
}

// agentPod runs the collector from the host's build, as deploy/'s user, on the node's network.
func (s *suite) agentPod() *corev1.Pod {
	return s.agentPodWith("oomwatch-agent", "config.yaml", false)
}

// agentPodWith runs the collector with a configuration of agentDir; privileged runs it as
// root and privileged, as deploy/components/kernel-log does, to read /dev/kmsg.
func (s *suite) agentPodWith(name, config string, privileged bool) *corev1.Pod {
	no, uid := false, int64(agentUID)
	yes := true
	podSecurity := &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes}
	var security *corev1.SecurityContext
	if privileged {
		root := int64(0)
		podSecurity = &corev1.PodSecurityContext{RunAsUser: &root, RunAsGroup: &root, RunAsNonRoot: &no}
		security = &corev1.SecurityContext{Privileged: &yes}
	}
	hostPath := func(p string) corev1.VolumeSource {
		return corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			NodeName:                     s.nodeOpts.NodeName,
			HostNetwork:                  true,
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &no,
			SecurityContext:              podSecurity,
			Containers: []corev1.Container{{
				Name:            "otelcol",
				Image:           testworkload.WorkloadImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/otelcol/" + filepath.Base(s.collector), "--config", "/agent/" + config},
				SecurityContext: security,
				Env:             []corev1.EnvVar{{Name: "KUBECONFIG", Value: "/agent/kubeconfig"}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "otelcol", MountPath: "/otelcol", ReadOnly: true},
					{Name: "agent", MountPath: "/agent", ReadOnly: true},
					{Name: "cgroup", MountPath: "/host/sys/fs/cgroup", ReadOnly: true},
					{Name: "log", MountPath: agentLogDir},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "otelcol", VolumeSource: hostPath(filepath.Dir(s.collector))},
				{Name: "agent", VolumeSource: hostPath(agentDir)},
				{Name: "cgroup", VolumeSource: hostPath("/sys/fs/cgroup")},
				{Name: "log", VolumeSource: hostPath(agentLogDir)},
			},
		},
	}
}

// deleteNodePods force-deletes every pod bound to the node.
func deleteNodePods(ctx context.Context, t *testing.T, s *suite) {
	t.Helper()
	pods, err := s.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + s.nodeOpts.NodeName})
	require.NoError(t, err)
	zero := int64(0)
	for _, p := range pods.Items {
		require.NoError(t, s.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	}
}

// summary reads the kubelet's /stats/summary from the host, through the node's forward of its
// port 10250, with the agent's token.
func (s *suite) summary(ctx context.Context) (*v1alpha1.Summary, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		// The kubelet's serving certificate is its own, self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/stats/summary", s.nodeOpts.KubeletPort), http.NoBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("/stats/summary: %s: %s", resp.Status, b)
	}
	var sum v1alpha1.Summary
	if err := json.NewDecoder(resp.Body).Decode(&sum); err != nil {
		return nil, err
	}
	return &sum, nil
}

var errNoStatus = errors.New("no status of the container yet")

// containerStatus is the status of a pod's container.
func containerStatus(p *corev1.Pod, container string) (corev1.ContainerStatus, error) {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container {
			return st, nil
		}
	}
	return corev1.ContainerStatus{}, errNoStatus
}
