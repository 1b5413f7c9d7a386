// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
)

// NewFactory returns the factory of the oom_counter processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithMetrics(createMetrics, metadata.MetricsStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		// The three counters of the k8s_container receiver: containers ended by the OOM killer,
		// processes it killed inside living containers, and system OOM kills of a node.
		Counters: []Counter{
			{
				Metric:              "k8s.container.oom_killed",
				Output:              "k8s.container.oom_kills",
				OccurrenceAttribute: "k8s.container.restart_count",
			},
			{Metric: "k8s.container.process.oom_killed", Output: "k8s.container.process.oom_kills"},
			{Metric: "k8s.node.system_oom_killed", Output: "k8s.node.system_oom_kills"},
		},
		// What names a container, or a node: not container.id, nor labels, whose values change
		// while the container stays the same.
		IdentifyingAttributes: []string{"k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.container.name", "k8s.node.name"},
		GapPolicy:             GapPolicyLowerBound,
		MaxStale:              15 * time.Minute,
		MaxSeries:             100_000,
		CheckpointInterval:    30 * time.Second,
	}
}

func createMetrics(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
	p, err := newCounterProcessor(set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewMetrics(ctx, set, cfg, next, p.processMetrics,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
	)
}
