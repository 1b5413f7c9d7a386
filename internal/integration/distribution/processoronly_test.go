// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package distribution

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A distribution that takes only oom_counter, as a user's ocb configuration would, must not pull
// client-go or any other Kubernetes module because of it: the processor is a module of its own
// for that. The collector's own service module already requires client-go (its telemetry
// configuration carries a Kubernetes resource detector), so the distribution is compared with one
// built from the same core without the processor: the processor must add no Kubernetes module and
// change no Kubernetes version.
func TestProcessorOnlyDistributionAddsNoKubernetesModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a collector distribution")
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)

	own := kubernetesModules(goTool(t, filepath.Join(root, "processor", "oomcounterprocessor"), "list", "-m", "all"))
	require.Empty(t, own, "the processor's module graph has Kubernetes modules")

	processor := `processors:
  - gomod: github.com/oomwatch/oomwatch/processor/oomcounterprocessor v0.0.0
replaces:
  - github.com/oomwatch/oomwatch/processor/oomcounterprocessor => ` + filepath.Join(root, "processor", "oomcounterprocessor") + `
`
	// The core alone: a distribution needs a component, and the batch processor is the core's.
	core := `processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v0.165.0
`
	withProcessor := generate(t, root, "otelcol-oomcounter", processor)
	coreOnly := generate(t, root, "otelcol-core", core)

	modules := goTool(t, withProcessor, "list", "-m", "all")
	require.True(t, strings.Contains(modules, "github.com/oomwatch/oomwatch/processor/oomcounterprocessor "), "the distribution lacks the processor")
	require.False(t, strings.Contains(modules, "github.com/oomwatch/oomwatch/receiver"), "the processor pulls the receiver's module")
	require.Equal(t, kubernetesModules(goTool(t, coreOnly, "list", "-m", "all")), kubernetesModules(modules),
		"the processor changes the Kubernetes modules of the distribution")

	bin := filepath.Join(t.TempDir(), "otelcol-oomcounter")
	goTool(t, withProcessor, "build", "-trimpath", "-o", bin, ".")
	components := runBinary(t, bin, "components")
	require.Contains(t, components, "name: oom_counter\n")
	require.NotContains(t, components, "k8s_container")
}

// generate writes the sources of a distribution with components (builder configuration YAML)
// and the file provider, with ocb, and returns their folder.
func generate(t *testing.T, root, name, components string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "builder-config.yaml")
	dist := filepath.Join(dir, "dist")
	require.NoError(t, os.WriteFile(cfg, []byte(`dist:
  name: `+name+`
  output_path: `+dist+`
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v1.71.0
`+components), 0o600))
	goTool(t, root, "tool", "-modfile="+filepath.Join(root, "tools", "go.mod"), "builder", "--config", cfg, "--skip-compilation")
	return dist
}

// kubernetesModules returns the lines of go list -m all that name a Kubernetes module.
func kubernetesModules(list string) []string {
	var k8s []string
	for _, line := range strings.Split(list, "\n") {
		if strings.HasPrefix(line, "k8s.io/") || strings.HasPrefix(line, "sigs.k8s.io/") {
			k8s = append(k8s, line)
		}
	}
	return k8s
}

// goTool runs the go command in dir, failing the test with its output on error.
func goTool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "go %s in %s:\n%s", strings.Join(args, " "), dir, stderr.String())
	return string(stdout)
}

// runBinary runs bin with args and returns what it printed.
func runBinary(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}
