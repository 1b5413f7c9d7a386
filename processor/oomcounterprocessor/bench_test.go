// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	}{{"flags", metricsgen.Flags}, {"flags-in-one-metric", metricsgen.FlagsInOneMetric}, {"deltas", metricsgen.Deltas}}
}

// BenchmarkConsume: ns and allocations per data point, one batch of 1000 containers per
// operation, timed as metricsgen.Workload.Bench says.
func BenchmarkConsume(b *testing.B) {
	for _, k := range benchKinds() {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/series=%d", k.name, n), func(b *testing.B) {
				p, w := newBenchProcessor(b, k.kind, n)
				w.Bench(b, p.ConsumeMetrics)
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
		want := map[metricsgen.Kind]int64{metricsgen.Flags: 1, metricsgen.FlagsInOneMetric: 1, metricsgen.Deltas: 3}[k.kind]
		if total != want {
			t.Fatalf("%s: highest total %d, want %d", k.name, total, want)
		}
	}
}

// TestAllocationsDoNotGrowWithPoints: in steady state a batch costs a fixed number of
// allocations (the processorhelper's telemetry), whatever its number of points, except the two
// that pdata makes for each gauge that becomes a sum (the new Sum and its oneof wrapper; the
// points move without a copy). The receiver puts each container in a resource of its own, so
// there each flag costs these two; flags in one metric share them.
func TestAllocationsDoNotGrowWithPoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind metricsgen.Kind
		// growth is how many more allocations 1000 points cost than 100.
		growth float64
	}{
		{"deltas", metricsgen.Deltas, 0},
		{"flags in one metric", metricsgen.FlagsInOneMetric, 0},
		{"flags, one resource per container", metricsgen.Flags, 2 * 900},
	} {
		perBatch := map[int]float64{}
		for _, points := range []int{100, 1000} {
			p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), benchConfig(tc.kind, points), consumertest.NewNop())
			require.NoError(t, err)
			w := metricsgen.New(tc.kind, points, points)
			batches := make([]pmetric.Metrics, 12)
			for i := range batches {
				batches[i] = w.Next()
			}
			// The first batch starts every series; the others find them tracked.
			require.NoError(t, p.ConsumeMetrics(context.Background(), batches[0]))
			next := 1
			perBatch[points] = testing.AllocsPerRun(10, func() {
				require.NoError(t, p.ConsumeMetrics(context.Background(), batches[next]))
				next++
			})
			require.NoError(t, p.Shutdown(context.Background()))
		}
		t.Logf("%s: %v allocations per batch of 100 points, %v per batch of 1000", tc.name, perBatch[100], perBatch[1000])
		assert.InDelta(t, tc.growth, perBatch[1000]-perBatch[100], 0.5, "%s: allocations that grow with the points", tc.name)
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
