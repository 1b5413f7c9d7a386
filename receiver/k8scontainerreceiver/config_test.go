// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	withDefaults := func(change func(*Config)) *Config {
		cfg := createDefaultConfig().(*Config)
		change(cfg)
		return cfg
	}
	tests := []struct {
		id      string
		want    *Config
		wantErr string
	}{
		{
			id:      "",
			wantErr: `kubelet.enabled needs node, the node whose kubelet to scrape (got node "")`,
		},
		{
			id: "daemonset",
			want: withDefaults(func(c *Config) {
				c.CollectionInterval = 15 * time.Second
				c.Node = "node-a"
				c.ClusterName = "eu-1"
				c.Kubelet.CAFile = "/etc/kubelet/ca.crt"
				c.Kubelet.Timeout = 2 * time.Second
				c.Extract.Labels = []FieldExtract{{Key: "app.kubernetes.io/name", TagName: "app"}, {Key: "team"}}
				c.Extract.Annotations = []FieldExtract{{Key: "oomwatch.io/owner"}}
				require.NoError(t, confmap.NewFromStringMap(map[string]any{
					"resource_attributes": map[string]any{"container.id": map[string]any{"enabled": true}},
					"metrics":             map[string]any{"container.cpu.usage": map[string]any{"enabled": false}},
				}).Unmarshal(&c.MetricsBuilderConfig))
			}),
		},
		{
			id: "cluster",
			want: withDefaults(func(c *Config) {
				c.AuthType = "kubeConfig"
				c.Context = "kind-dev"
				c.Kubelet.Enabled = false
			}),
		},
		{
			id: "static_kubelet",
			want: withDefaults(func(c *Config) {
				c.Node = "node-a"
				c.MaxPendingTerminations = 8
				c.Kubelet.Endpoint = "https://10.0.0.5:10250"
				c.Kubelet.AuthType = "tls"
				c.Kubelet.CertFile = "/etc/client.crt"
				c.Kubelet.KeyFile = "/etc/client.key"
				c.Kubelet.InsecureSkipVerify = true
			}),
		},
		{
			id: "cgroup_kills",
			want: withDefaults(func(c *Config) {
				c.Node = "node-a"
				c.ProcessOOMKills = ProcessOOMKillsConfig{Source: ProcessSourceCgroup, CgroupRoot: "/host/sys/fs/cgroup"}
				require.NoError(t, confmap.NewFromStringMap(map[string]any{
					"k8s.node.system_oom_kill": map[string]any{"enabled": false},
				}).Unmarshal(&c.Events))
			}),
		},
		{id: "kernel_log_needs_node", wantErr: `kernel_log.enabled reads the kernel log of one node: it needs node (got "")`},
		{id: "kernel_log_needs_node", wantErr: `kernel_log.enabled needs kernel_log.path (got "")`},
		{id: "bad_process_source", wantErr: `process_oom_kills.source must be kubelet or cgroup (got "dmesg")`},
		{id: "cgroup_needs_root", wantErr: `process_oom_kills.source cgroup needs process_oom_kills.cgroup_root`},
		{id: "cgroup_needs_root", wantErr: `process_oom_kills.source cgroup reads the cgroups of one node: it needs node (got "")`},
		{id: "cgroup_root_without_cgroup", wantErr: `process_oom_kills.cgroup_root is used only with process_oom_kills.source cgroup (got "/host/sys/fs/cgroup" with source "kubelet")`},
		{id: "extract_overwrites_workload", wantErr: `extract.labels[0].tag_name "k8s.deployment.name" is an attribute the receiver sets itself`},
		{id: "bad_auth", wantErr: `auth_type must be serviceAccount, kubeConfig or none (got "token")`},
		{id: "bad_kubelet", wantErr: `kubelet.auth_type must be serviceAccount, tls, kubeConfig or none (got "basic")`},
		{id: "bad_kubelet", wantErr: `kubelet.timeout must be positive (got 0s)`},
		{id: "bad_kubelet", wantErr: `kubelet.endpoint "ftp://10.0.0.5": scheme must be https or http (got "ftp")`},
		{id: "kubelet_needs_node", wantErr: `kubelet.enabled needs node`},
		{id: "tls_needs_files", wantErr: `kubelet.auth_type tls needs kubelet.cert_file and kubelet.key_file (got "" and "")`},
		{id: "bad_limits", wantErr: `collection_interval must be positive (got 0s)`},
		{id: "bad_limits", wantErr: `max_pending_terminations must be positive (got -1)`},
		{id: "context_without_kubeconfig", wantErr: `context is used only with auth_type kubeConfig (got context "kind-dev" with auth_type "serviceAccount")`},
		{id: "bad_extract", wantErr: `extract.labels[1].key "app" is named twice`},
		{id: "bad_extract", wantErr: `extract.annotations[0].key must be set (got "")`},
		{id: "extract_overwrites", wantErr: `extract.labels[0].tag_name "k8s.pod.uid" is an attribute the receiver sets itself`},
		{id: "extract_overwrites", wantErr: `extract.annotations[0].tag_name "workload" is already the tag_name of extract.labels[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.id+tt.wantErr, func(t *testing.T) {
			t.Parallel()
			sub, err := cm.Sub(component.NewIDWithName(metadata.Type, tt.id).String())
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

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	assert.Equal(t, 10*time.Second, cfg.CollectionInterval)
	assert.Equal(t, "serviceAccount", cfg.AuthType)
	assert.True(t, cfg.Kubelet.Enabled)
	assert.Equal(t, "serviceAccount", cfg.Kubelet.AuthType)
	assert.Equal(t, 5*time.Second, cfg.Kubelet.Timeout)
	assert.False(t, cfg.Kubelet.InsecureSkipVerify)
	assert.False(t, cfg.ResourceAttributes.ContainerID.Enabled)
	// The one thing a DaemonSet must add.
	cfg.Node = "node-a"
	require.NoError(t, confmap.Validate(cfg))
}
