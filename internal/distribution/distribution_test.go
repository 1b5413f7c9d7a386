package distribution

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/oomwatch/oomwatch/deploy"
)

// collector returns the built binary: make test builds it first (make collector).
func collector(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("OOMWATCH_COLLECTOR")
	if bin == "" {
		bin = filepath.Join("..", "..", "_build", "otelcol-oomwatch", "otelcol-oomwatch")
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
	configs, err := filepath.Glob(filepath.Join("..", "..", "testdata", "config", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, configs)
	env := []string{"K8S_NODE_NAME=node-1", "OTLP_ENDPOINT=127.0.0.1:4317"}
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

// TestShippedConfigMapsValidate: the collector configurations inside deploy/'s ConfigMaps are
// accepted by the collector that ships with them.
func TestShippedConfigMapsValidate(t *testing.T) {
	t.Parallel()
	env := []string{"K8S_NODE_NAME=node-1", "POD_IP=127.0.0.1"}
	for _, file := range []string{"agent-config.yaml", "gateway/gateway.yaml"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			raw, err := deploy.Manifests.ReadFile(file)
			require.NoError(t, err)
			found := 0
			for _, doc := range strings.Split(string(raw), "\n---") {
				var cm corev1.ConfigMap
				require.NoError(t, yaml.Unmarshal([]byte(doc), &cm))
				if cm.Kind != "ConfigMap" {
					continue
				}
				found++
				cfg := filepath.Join(t.TempDir(), "config.yaml")
				require.NoError(t, os.WriteFile(cfg, []byte(cm.Data["config.yaml"]), 0o600))
				out, err := run(t, env, "validate", "--config", cfg)
				require.NoError(t, err, out)
			}
			require.Equal(t, 1, found, "one ConfigMap with the collector configuration")
		})
	}
}
