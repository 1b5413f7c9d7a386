// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	storageID := component.MustNewID("file_storage")
	tests := []struct {
		name    string
		want    *Config
		wantErr string
	}{
		{name: "", want: createDefaultConfig().(*Config)},
		{name: "full", want: &Config{
			Counters: []Counter{
				{Metric: "k8s.container.oom_killed", Output: "k8s.container.oom_kills", OccurrenceAttribute: "k8s.container.restart_count"},
				{Metric: "container.oom.events", Output: "container.oom.events.total"},
			},
			IdentifyingAttributes: []string{"k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.container.name", "k8s.node.name"},
			GapPolicy:             GapPolicyUpperBound,
			MaxStale:              5 * time.Minute,
			MaxSeries:             5000,
			KeepInput:             true,
			Storage:               &storageID,
			CheckpointInterval:    10 * time.Second,
		}},
		{name: "every_resource_attribute_identifies", want: func() *Config {
			cfg := createDefaultConfig().(*Config)
			cfg.IdentifyingAttributes = []string{}
			return cfg
		}()},
		{name: "bad_identifying_attributes", wantErr: "identifying_attributes[1] must not be empty\nidentifying_attributes[2] \"k8s.pod.uid\" is already identifying_attributes[0]"},
		{name: "bad_gap_policy", wantErr: `gap_policy must be "lower_bound" or "upper_bound" (got "exact")`},
		{name: "bad_max_stale", wantErr: "max_stale must be at least 1s (got -1s)"},
		{name: "short_max_stale", wantErr: "max_stale must be at least 1s (got 500ms)"},
		{name: "bad_max_series", wantErr: "max_series must be positive (got 0)"},
		{name: "no_counters", wantErr: "counters must hold at least one rule"},
		{name: "empty_names", wantErr: "counters[0].metric must not be empty\ncounters[0].output must not be empty"},
		{name: "duplicate_input", wantErr: `counters[1].metric "a" is already the input of counters[0]`},
		{name: "output_is_input", wantErr: `counters[0].output "b" is the input of counters[1]: a counter would be counted again`},
		{name: "bad_checkpoint_interval", wantErr: "checkpoint_interval must be positive when storage is set (got 0s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sub, err := cm.Sub(component.NewIDWithName(metadata.Type, tt.name).String())
			require.NoError(t, err)
			cfg := createDefaultConfig()
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg)
		})
	}
}
