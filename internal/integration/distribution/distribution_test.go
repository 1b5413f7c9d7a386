// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package distribution

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/internal/packaging/deployconfig"
)

// collector returns the built binary: make test builds it first (make collector).
func collector(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("OOMWATCH_COLLECTOR")
	if bin == "" {
		bin = filepath.Join("..", "..", "..", "_build", "otelcol-oomwatch", "otelcol-oomwatch")
	}
	_, err := os.Stat(bin)
	require.NoError(t, err, "the collector is not built: run make collector (make test does)")
	return bin
}

func run(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(collector(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestComponents(t *testing.T) {
	t.Parallel()
	out, err := run(t, nil, "components")
	require.NoError(t, err, out)
	for _, name := range []string{
		"k8s_container", "otlp", "oom_counter", "batch", "memory_limiter",
		"otlp_grpc", "otlp_http", "debug", "prometheus", "prometheus_remote_write", "file_storage", "health_check",
	} {
		assert.Contains(t, out, "name: "+name+"\n", name)
	}
}

func TestExampleConfigsValidate(t *testing.T) {
	t.Parallel()
	configs, err := filepath.Glob(filepath.Join("..", "..", "..", "testdata", "config", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, configs)
	// The demo's agent sends its kill records to the demo too.
	env := []string{"K8S_NODE_NAME=node-1", "OTLP_ENDPOINT=127.0.0.1:4317", "DEMO_RECORDS_ENDPOINT=http://127.0.0.1:4318"}
	for _, cfg := range configs {
		t.Run(filepath.Base(cfg), func(t *testing.T) {
			t.Parallel()
			out, err := run(t, env, "validate", "--config", cfg)
			require.NoError(t, err, out)
		})
	}
}

func TestValidateNamesTheBadField(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(strings.TrimSpace(`
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  oom_counter:
    max_stale: 100ms
exporters:
  debug: {}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [oom_counter]
      exporters: [debug]
`)), 0o600))
	out, err := run(t, nil, "validate", "--config", cfg)
	require.Error(t, err)
	assert.Contains(t, out, "max_stale must be at least 1s (got 100ms)")
}

// TestShippedConfigsValidate: the collector configurations of the ConfigMaps that deploy/
// generates are accepted by the collector that ships with them, with the environment the
// workloads give them; the agent's also with TLS turned off, as an overlay may do, and with the
// kubelet's process-kill source instead of the cgroups.
func TestShippedConfigsValidate(t *testing.T) {
	t.Parallel()
	agent := []string{"K8S_NODE_NAME=node-1", "POD_IP=10.0.0.7", "OTLP_ENDPOINT=oomwatch-gateway.oomwatch-gateway.svc:4317"}
	// What a component merges over a configuration, as a further --config.
	overs := map[string]func() (string, error){"gateway to Prometheus over OTLP": deployconfig.GatewayPrometheusOTLP}
	for name, c := range map[string]struct {
		config func() (string, error)
		env    []string
	}{
		"agent": {deployconfig.Agent, append(agent,
			"OTLP_CA_FILE=/etc/otelcol-oomwatch/tls/ca.crt",
			"OTLP_CERT_FILE=/etc/otelcol-oomwatch/tls/tls.crt",
			"OTLP_KEY_FILE=/etc/otelcol-oomwatch/tls/tls.key")},
		"agent without TLS":        {deployconfig.Agent, append(agent, "OTLP_INSECURE=true")},
		"agent of a named cluster": {deployconfig.Agent, append(agent, "OTLP_INSECURE=true", "K8S_CLUSTER_NAME=eu-1")},
		// The environment deploy/components/pod-events sets.
		"agent with pod events": {deployconfig.Agent, append(agent, "OTLP_INSECURE=true", "OOMWATCH_POD_EVENTS=true")},
		// The environment deploy/components/kernel-log sets.
		"agent with the kernel log": {deployconfig.Agent, append(agent, "OTLP_INSECURE=true", "OOMWATCH_KERNEL_LOG=true")},
		// The environment deploy/components/kubelet-source sets (deploy's TestKubeletSourceComponent).
		"agent with the kubelet source": {deployconfig.Agent, append(agent, "OTLP_INSECURE=true",
			"OOMWATCH_PROCESS_OOM_KILLS_SOURCE=kubelet", "OOMWATCH_CGROUP_ROOT=")},
		"gateway": {deployconfig.Gateway, []string{
			"POD_IP=10.0.0.8", "PROMETHEUS_REMOTE_WRITE_URL=http://prometheus.monitoring.svc:9090/api/v1/write",
			"LOGS_OTLP_ENDPOINT=http://victorialogs.monitoring.svc:9428/insert/opentelemetry/v1/logs",
			"TLS_CERT_FILE=/etc/otelcol-oomwatch/tls/tls.crt",
			"TLS_KEY_FILE=/etc/otelcol-oomwatch/tls/tls.key",
			"TLS_CLIENT_CA_FILE=/etc/otelcol-oomwatch/tls/ca.crt",
		}},
		// The environment deploy/gateway/components/prometheus-otlp leaves: no remote-write URL.
		"gateway to Prometheus over OTLP": {deployconfig.Gateway, []string{
			"POD_IP=10.0.0.8", "PROMETHEUS_OTLP_URL=http://prometheus.monitoring.svc:9090/api/v1/otlp/v1/metrics",
			"LOGS_OTLP_ENDPOINT=http://victorialogs.monitoring.svc:9428/insert/opentelemetry/v1/logs",
			"TLS_CERT_FILE=/etc/otelcol-oomwatch/tls/tls.crt",
			"TLS_KEY_FILE=/etc/otelcol-oomwatch/tls/tls.key",
			"TLS_CLIENT_CA_FILE=/etc/otelcol-oomwatch/tls/ca.crt",
		}},
		"gateway without TLS": {deployconfig.GatewayPlaintext, []string{
			"POD_IP=127.0.0.2", "PROMETHEUS_REMOTE_WRITE_URL=http://127.0.0.1:9090/api/v1/write",
			"LOGS_OTLP_ENDPOINT=http://127.0.0.1:9428/insert/opentelemetry/v1/logs",
		}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			content, err := c.config()
			require.NoError(t, err)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "config.yaml")
			require.NoError(t, os.WriteFile(cfg, []byte(content), 0o600))
			args := []string{"validate", "--config", cfg}
			if over, ok := overs[name]; ok {
				over, err := over()
				require.NoError(t, err)
				f := filepath.Join(dir, "over.yaml")
				require.NoError(t, os.WriteFile(f, []byte(over), 0o600))
				args = append(args, "--config", f)
			}
			out, err := run(t, c.env, args...)
			require.NoError(t, err, out)
		})
	}
}

// TestGatewayRefusesToStartWithoutItsCertificate: the shipped gateway takes no plaintext; with no
// certificate it does not start.
func TestGatewayRefusesToStartWithoutItsCertificate(t *testing.T) {
	t.Parallel()
	content, err := deployconfig.Gateway()
	require.NoError(t, err)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(content), 0o600))
	out, err := run(t, []string{"PROMETHEUS_REMOTE_WRITE_URL=http://127.0.0.1:9090/api/v1/write",
		"LOGS_OTLP_ENDPOINT=http://127.0.0.1:9428/insert/opentelemetry/v1/logs"}, "validate", "--config", cfg)
	require.Error(t, err)
	assert.Contains(t, out, "TLS configuration must include both certificate and key")
}
