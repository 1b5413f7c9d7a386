// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.yaml.in/yaml/v3"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadatatest"
)

// FuzzProcessMetrics feeds arbitrary OTLP batches (seeded with the behaviour cases) to the
// processor, twice each: it must never panic, and every counter it emits must be a cumulative
// monotonic int sum that did not go down from one delivery to the next.
func FuzzProcessMetrics(f *testing.F) {
	steps, err := filepath.Glob(filepath.Join("testdata", "cases", "*", "step-*.yaml"))
	require.NoError(f, err)
	var marshaler pmetric.ProtoMarshaler
	for _, file := range steps {
		raw, err := os.ReadFile(file)
		require.NoError(f, err)
		var step caseStep
		require.NoError(f, yaml.Unmarshal(raw, &step))
		blob, err := marshaler.MarshalMetrics(toMetrics(&testing.T{}, step.In))
		require.NoError(f, err)
		f.Add(blob)
	}

	cfg := createDefaultConfig().(*Config)
	cfg.Counters = append(cfg.Counters, Counter{Metric: "container.oom.events", Output: "container.oom.events.total"}, Counter{Metric: "app.degraded", Output: "app.degradations"})
	cfg.MaxSeries = 64
	f.Fuzz(func(t *testing.T, blob []byte) {
		var unmarshaler pmetric.ProtoUnmarshaler
		md, err := unmarshaler.UnmarshalMetrics(blob)
		if err != nil {
			return
		}
		tt := componenttest.NewTelemetry()
		defer func() { _ = tt.Shutdown(context.Background()) }()
		p, err := newCounterProcessor(metadatatest.NewSettings(tt), cfg)
		require.NoError(t, err)
		again := pmetric.NewMetrics()
		md.CopyTo(again)

		first, err := p.processMetrics(context.Background(), md)
		require.NoError(t, err)
		totals := counterTotals(t, first)
		second, err := p.processMetrics(context.Background(), again)
		require.NoError(t, err)
		for key, v := range counterTotals(t, second) {
			if before, ok := totals[key]; ok && v < before {
				t.Fatalf("counter %v went down on re-delivery: %d -> %d", key, before, v)
			}
		}
	})
}

type counterKey struct {
	resource, metric, attrs string
	start                   uint64
}

func counterTotals(t *testing.T, md pmetric.Metrics) map[counterKey]int64 {
	totals := map[counterKey]int64{}
	outputs := map[string]bool{"k8s.container.oom_kills": true, "container.oom.events.total": true, "app.degradations": true}
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if !outputs[m.Name()] || m.Type() != pmetric.MetricTypeSum || !m.Sum().IsMonotonic() ||
					m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
					continue // an input that passed through, or a look-alike that was there before
				}
				for _, dp := range m.Sum().DataPoints().All() {
					if dp.ValueType() != pmetric.NumberDataPointValueTypeInt || dp.IntValue() < 0 {
						t.Fatalf("counter %s carries %v", m.Name(), dp.ValueType())
					}
					key := counterKey{
						resource: fmtMap(rm.Resource().Attributes().AsRaw()),
						metric:   m.Name(),
						attrs:    fmtMap(dp.Attributes().AsRaw()),
						start:    uint64(dp.StartTimestamp()),
					}
					totals[key] = max(totals[key], dp.IntValue())
				}
			}
		}
	}
	return totals
}

func fmtMap(m map[string]any) string {
	b, _ := yaml.Marshal(m)
	return string(b)
}
