// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/apiclient"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
)

const (
	defaultCollectionInterval     = 10 * time.Second
	defaultKubeletTimeout         = 5 * time.Second
	defaultMaxPendingTerminations = 64
)

// NewFactory returns the factory of the k8s_container receiver.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(
		metadata.Type,
		createDefaultConfig,
		receiver.WithMetrics(createMetrics, metadata.MetricsStability),
		receiver.WithLogs(createLogs, metadata.LogsStability),
	)
}

func createDefaultConfig() component.Config {
	controller := scraperhelper.NewDefaultControllerConfig()
	controller.CollectionInterval = defaultCollectionInterval
	return &Config{
		ControllerConfig:     controller,
		MetricsBuilderConfig: metadata.NewDefaultMetricsBuilderConfig(),
		AuthType:             apiclient.AuthServiceAccount,
		Kubelet: KubeletConfig{
			Enabled:  true,
			AuthType: kubelet.AuthServiceAccount,
			Timeout:  defaultKubeletTimeout,
		},
		Events:                 metadata.DefaultEventsConfig(),
		ProcessOOMKills:        ProcessOOMKillsConfig{Source: ProcessSourceKubelet},
		MaxPendingTerminations: defaultMaxPendingTerminations,
	}
}

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	return newReceiver(set, cfg.(*Config), next, defaultDeps())
}

func createLogs(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
	return newLogsReceiver(set, cfg.(*Config), next, defaultDeps())
}
