// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package deployconfig

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// The ConfigMaps hold the files, byte for byte: there is one configuration of each.
func TestConfigsAreTheFiles(t *testing.T) {
	t.Parallel()
	for file, get := range map[string]func() (string, error){
		"config.yaml":         Agent,
		"gateway/config.yaml": Gateway,
		"gateway/components/prometheus-otlp/prometheus-otlp.yaml": GatewayPrometheusOTLP,
	} {
		want, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", file))
		require.NoError(t, err)
		got, err := get()
		require.NoError(t, err, file)
		assert.Equal(t, string(want), got, file)
	}
}

func TestGatewayPlaintextDropsOnlyTheReceiversTLS(t *testing.T) {
	t.Parallel()
	shipped, err := Gateway()
	require.NoError(t, err)
	plain, err := GatewayPlaintext()
	require.NoError(t, err)
	var want, got map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(shipped), &want))
	require.NoError(t, yaml.Unmarshal([]byte(plain), &got))
	grpc := want["receivers"].(map[string]any)["otlp"].(map[string]any)["protocols"].(map[string]any)["grpc"].(map[string]any)
	require.Contains(t, grpc, "tls")
	delete(grpc, "tls")
	assert.Equal(t, want, got)
}
