// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metricsgen"
)

const benchBatch = 1000

var benchSizes = []int{1_000, 100_000, 1_000_000}

func benchConfig(kind metricsgen.Kind, series int) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.MaxSeries = series
	if kind == metricsgen.Deltas {
		cfg.Counters = []Counter{{Metric: metricsgen.DeltaMetric, Output: "container.oom.events.total"}}
	}
	return cfg
}

// newBenchProcessor returns the processor as the collector builds it, with every series of the
// workload already tracked: the benchmark measures the steady state.
func newBenchProcessor(b *testing.B, kind metricsgen.Kind, series int) (processor.Metrics, *metricsgen.Workload) {
	b.Helper()
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), benchConfig(kind, series), consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	w := metricsgen.New(kind, series, benchBatch)
	for range w.Rounds() {
		if err := p.ConsumeMetrics(context.Background(), w.Next()); err != nil {
			b.Fatal(err)
		}
	}
	return p, w
}

func benchKinds() []struct {
	name string
	kind metricsgen.Kind
} {
	return []struct {
		name string
		kind metricsgen.Kind
	}{{"flags", metricsgen.Flags}, {"deltas", metricsgen.Deltas}}
}

// BenchmarkConsume: ns and allocations per data point, one batch of 1000 containers per
// operation, building the batch excluded.
func BenchmarkConsume(b *testing.B) {
	for _, k := range benchKinds() {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/series=%d", k.name, n), func(b *testing.B) {
				p, w := newBenchProcessor(b, k.kind, n)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					b.StopTimer()
					md := w.Next()
					b.StartTimer()
					if err := p.ConsumeMetrics(context.Background(), md); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/point")
			})
		}
	}
}

// TestBenchWorkloadIsCounted checks what the benchmark workload produces: one counter point per input point.
func TestBenchWorkloadIsCounted(t *testing.T) {
	t.Parallel()
	for _, k := range benchKinds() {
		sink := new(consumertest.MetricsSink)
		p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), benchConfig(k.kind, 100), sink)
		if err != nil {
			t.Fatal(err)
		}
		w := metricsgen.New(k.kind, 100, 50)
		for range 6 {
			if err := p.ConsumeMetrics(context.Background(), w.Next()); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		points, total := 0, int64(0)
		for _, md := range sink.AllMetrics() {
			for _, rm := range md.ResourceMetrics().All() {
				m := rm.ScopeMetrics().At(0).Metrics().At(0)
				if m.Type() != pmetric.MetricTypeSum || m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
					t.Fatalf("%s: %s is not a cumulative sum", k.name, m.Name())
				}
				points += m.Sum().DataPoints().Len()
				total = max(total, m.Sum().DataPoints().At(0).IntValue())
			}
		}
		if points != 300 {
			t.Fatalf("%s: %d output points for 300 input points", k.name, points)
		}
		// Three rounds over every series: flags count rounds 1 (OOM at odd instances), deltas add 1 each.
		want := map[metricsgen.Kind]int64{metricsgen.Flags: 1, metricsgen.Deltas: 3}[k.kind]
		if total != want {
			t.Fatalf("%s: highest total %d, want %d", k.name, total, want)
		}
	}
}

// BenchmarkConsumeParallel sends batches from several goroutines at once (run with -cpu 1,2).
// Each goroutine builds its own batches inside the timed loop, so compare the cpu=1 and cpu=2
// rows with each other, not with BenchmarkConsume.
func BenchmarkConsumeParallel(b *testing.B) {
	const series = 100_000
	p, _ := newBenchProcessor(b, metricsgen.Flags, series)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := metricsgen.New(metricsgen.Flags, series, benchBatch)
		// Later rounds than the warm-up, so the points are news.
		for range w.Rounds() {
			w.Next()
		}
		for pb.Next() {
			if err := p.ConsumeMetrics(context.Background(), w.Next()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/point")
}
