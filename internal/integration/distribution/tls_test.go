// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package distribution

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/yaml"

	"github.com/oomwatch/oomwatch/internal/packaging/deployconfig"
	"github.com/oomwatch/oomwatch/internal/testing/collectorrun"
	"github.com/oomwatch/oomwatch/internal/testing/testcerts"
)

// TestAgentToGatewayOverMutualTLS runs the shipped gateway configuration with a certificate of a
// CA made here, in front of a real Prometheus with its remote-write receiver. A collector that
// sends with exactly the agent's shipped exporter section (endpoint and TLS from the same
// environment variables the DaemonSet sets) and a client certificate of that CA gets its counter
// to Prometheus, with the labels the alert rules group by. A sender whose certificate is of
// another CA, a client without a certificate and a plaintext client are refused, and nothing of
// theirs arrives.
func TestAgentToGatewayOverMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ip := freeLoopbackIP(t)
	pki := testcerts.NewCA(t, "oomwatch test CA")
	rogue := testcerts.NewCA(t, "someone else's CA")
	caFile := pki.WriteCert(t, dir, "ca.crt")
	serverCert, serverKey := pki.Issue(t, dir, "gateway", x509.ExtKeyUsageServerAuth, net.ParseIP(ip))
	agentCert, agentKey := pki.Issue(t, dir, "agent", x509.ExtKeyUsageClientAuth)
	rogueCert, rogueKey := rogue.Issue(t, dir, "intruder", x509.ExtKeyUsageClientAuth)

	prom := startPrometheus(t, dir)
	gatewayConfig, err := deployconfig.Gateway()
	require.NoError(t, err)
	gatewayLog := &syncBuffer{}
	startCollector(t, filepath.Join(dir, "gateway"), gatewayConfig, "http://"+net.JoinHostPort(ip, "13133")+"/", gatewayLog,
		"POD_IP="+ip,
		"PROMETHEUS_REMOTE_WRITE_URL="+prom+"/api/v1/write",
		// No record is sent in this test; nothing listens there.
		"LOGS_OTLP_ENDPOINT=http://127.0.0.1:9/insert/opentelemetry/v1/logs",
		"TLS_CERT_FILE="+serverCert, "TLS_KEY_FILE="+serverKey, "TLS_CLIENT_CA_FILE="+caFile)
	gatewayOTLP := net.JoinHostPort(ip, "4317")

	// The intruder trusts the gateway's CA, but its own certificate is of another CA.
	intruderLog := &syncBuffer{}
	intruder := startAgentExporter(t, filepath.Join(dir, "intruder"), intruderLog,
		"OTLP_ENDPOINT="+gatewayOTLP, "OTLP_CA_FILE="+caFile, "OTLP_CERT_FILE="+rogueCert, "OTLP_KEY_FILE="+rogueKey)
	send(t, intruder, insecure.NewCredentials(), oomKills("intruder", 99))
	agent := startAgentExporter(t, filepath.Join(dir, "agent"), nil,
		"OTLP_ENDPOINT="+gatewayOTLP, "OTLP_CA_FILE="+caFile, "OTLP_CERT_FILE="+agentCert, "OTLP_KEY_FILE="+agentKey)
	send(t, agent, insecure.NewCredentials(), oomKills("frontend", 3))

	var got []promSample
	require.Eventually(t, func() bool {
		got = query(t, prom, `k8s_container_oom_kills_total{k8s_deployment_name="frontend"}`)
		return len(got) == 1
	}, time.Minute, 200*time.Millisecond, "the agent's counter did not reach Prometheus; gateway log:\n%s", gatewayLog)
	assert.Equal(t, "3", got[0].Value)
	assert.Equal(t, map[string]string{
		"__name__":            "k8s_container_oom_kills_total",
		"k8s_namespace_name":  "shop",
		"k8s_deployment_name": "frontend",
		"k8s_pod_name":        "frontend-7d4b9c-x2x9q",
		"k8s_container_name":  "app",
	}, withoutJobAndInstance(got[0].Metric))

	// Refused: the gateway ends the handshake of a client certificate of another CA, and of none.
	require.Eventually(t, func() bool { return bytes.Contains(intruderLog.Bytes(), []byte("remote error: tls:")) },
		30*time.Second, 200*time.Millisecond, "the intruder's exporter logged no refusal:\n%s", intruderLog)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pki.PEM))
	noCert := credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	// (The error is the server's alert or, when the server closed first, a broken pipe.)
	assert.Error(t, sendOnce(gatewayOTLP, noCert, oomKills("nocert", 5)), "a client without a certificate")
	assert.Error(t, sendOnce(gatewayOTLP, insecure.NewCredentials(), oomKills("plaintext", 7)), "a plaintext client")
	for _, who := range []string{"intruder", "nocert", "plaintext"} {
		assert.Empty(t, query(t, prom, `{k8s_deployment_name="`+who+`"}`), who)
	}
	assert.NotContains(t, gatewayLog.String(), "deprecated", "the shipped gateway configuration uses a deprecated setting")
}

// freeLoopbackIP is an address of 127/8 where the gateway's ports (:4317, :13133, :8888) are free:
// a pod IP of its own, beside other tests that listen on 127.0.0.1.
func freeLoopbackIP(t *testing.T) string {
	t.Helper()
	for range 20 {
		ip := fmt.Sprintf("127.%d.%d.%d", 100+mathrand.IntN(100), mathrand.IntN(256), 2+mathrand.IntN(250))
		var held []net.Listener
		for _, port := range []string{"4317", "13133", "8888"} {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			_ = l.Close()
		}
		if len(held) == 3 {
			return ip
		}
	}
	t.Fatal("no loopback address with the gateway's ports free")
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// startCollector runs the built collector with config until the test ends.
func startCollector(t *testing.T, dir, config, healthURL string, log *syncBuffer, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bin, err := filepath.Abs(collector(t)) // the process runs in dir
	require.NoError(t, err)
	opts := collectorrun.Options{Binary: bin, Config: config, Dir: dir, Env: env, HealthURL: healthURL}
	if log != nil {
		opts.Log = log
	}
	c, err := collectorrun.Start(ctx, opts)
	require.NoError(t, err, "%s", log)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		assert.NoError(t, c.Stop(ctx))
	})
}

// startAgentExporter runs a collector that sends what it receives on OTLP (plaintext, loopback)
// with the exporters section of the agent's shipped configuration, untouched, and returns the
// address of its receiver.
func startAgentExporter(t *testing.T, dir string, log *syncBuffer, env ...string) string {
	t.Helper()
	shipped, err := deployconfig.Agent()
	require.NoError(t, err)
	var agent map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(shipped), &agent))
	exporters, ok := agent["exporters"].(map[string]any)
	require.True(t, ok)
	require.Contains(t, exporters, "otlp_grpc")
	receiver := "127.0.0.1:" + freePort(t)
	health := "127.0.0.1:" + freePort(t)
	cfg, err := yaml.Marshal(map[string]any{
		"extensions": map[string]any{"health_check": map[string]any{"endpoint": health}},
		"receivers":  map[string]any{"otlp": map[string]any{"protocols": map[string]any{"grpc": map[string]any{"endpoint": receiver}}}},
		"exporters":  exporters,
		"service": map[string]any{
			"telemetry":  map[string]any{"metrics": map[string]any{"level": "none"}},
			"extensions": []string{"health_check"},
			"pipelines":  map[string]any{"metrics": map[string]any{"receivers": []string{"otlp"}, "exporters": []string{"otlp_grpc"}}},
		},
	})
	require.NoError(t, err)
	startCollector(t, dir, string(cfg), "http://"+health+"/", log, env...)
	return receiver
}

// oomKills is what an agent's oom_counter sends for one container: a cumulative, monotonic count.
func oomKills(deployment string, count int64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	attrs.PutStr("k8s.namespace.name", "shop")
	attrs.PutStr("k8s.deployment.name", deployment)
	attrs.PutStr("k8s.pod.name", deployment+"-7d4b9c-x2x9q")
	attrs.PutStr("k8s.container.name", "app")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("k8s.container.oom_kills")
	m.SetUnit("{bool}")
	sum := m.SetEmptySum()
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	sum.SetIsMonotonic(true)
	dp := sum.DataPoints().AppendEmpty()
	now := time.Now()
	dp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Hour)))
	dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
	dp.SetIntValue(count)
	return md
}

func send(t *testing.T, endpoint string, creds credentials.TransportCredentials, md pmetric.Metrics) {
	t.Helper()
	require.NoError(t, sendOnce(endpoint, creds, md))
}

func sendOnce(endpoint string, creds credentials.TransportCredentials, md pmetric.Metrics) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pmetricotlp.NewGRPCClient(conn).Export(ctx, pmetricotlp.NewExportRequestFromMetrics(md))
	return err
}

// startPrometheus runs Debian's Prometheus with its remote-write receiver and returns its URL.
func startPrometheus(t *testing.T, dir string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but prometheus is missing: install Debian's prometheus package (make cluster-deps as root)")
		}
		t.Skip("prometheus is missing (Debian's prometheus package; make cluster-deps installs it)")
	}
	dir = filepath.Join(dir, "prometheus")
	require.NoError(t, os.MkdirAll(dir, 0o750))
	cfg := writeFile(t, dir, "prometheus.yml", []byte("global: {}\n"))
	addr := "127.0.0.1:" + freePort(t)
	log := &syncBuffer{}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/-/ready") //nolint:noctx // a loopback poll
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "prometheus did not get ready:\n%s", log)
	return base
}

type promSample struct {
	Metric map[string]string
	Value  string
}

// query runs an instant PromQL query.
func query(t *testing.T, base, q string) []promSample {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q)) //nolint:noctx // a loopback query
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status, "%s: %s", q, body.Error)
	out := make([]promSample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		v, _ := r.Value[1].(string)
		out = append(out, promSample{Metric: r.Metric, Value: v})
	}
	return out
}

// withoutJobAndInstance drops the labels that the exporter derives from service.* attributes,
// which the agent does not set.
func withoutJobAndInstance(labels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		if k != "job" && k != "instance" {
			out[k] = v
		}
	}
	return out
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *syncBuffer) String() string { return string(b.Bytes()) }
