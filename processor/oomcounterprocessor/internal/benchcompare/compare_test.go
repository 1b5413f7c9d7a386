// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package benchcompare

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/deltatocumulativeprocessor"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metricsgen"
)

const batchSize = 1000

// contender is a processor under comparison, built through its factory as a collector builds it.
type contender struct {
	name string
	make func(series int, next consumer.Metrics) (processor.Metrics, error)
}

func contenders() []contender {
	return []contender{
		{name: "oom_counter", make: func(series int, next consumer.Metrics) (processor.Metrics, error) {
			f := oomcounterprocessor.NewFactory()
			cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
			cfg.Counters = []oomcounterprocessor.Counter{{Metric: metricsgen.DeltaMetric, Output: metricsgen.DeltaMetric + ".total"}}
			cfg.MaxSeries = series
			cfg.MaxStale = 15 * time.Minute
			if err := cfg.Validate(); err != nil {
				return nil, err
			}
			return f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, next)
		}},
		{name: "delta_to_cumulative", make: func(series int, next consumer.Metrics) (processor.Metrics, error) {
			f := deltatocumulativeprocessor.NewFactory()
			cfg := f.CreateDefaultConfig()
			return f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, next)
		}},
	}
}

func start(b testing.TB, c contender, series int, next consumer.Metrics) processor.Metrics {
	b.Helper()
	p, err := c.make(series, next)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

// TestSameOutput shows that both contenders turn the workload into the same cumulative totals,
// so the benchmark compares equal work.
func TestSameOutput(t *testing.T) {
	totals := map[string][]int64{}
	for _, c := range contenders() {
		sink := new(consumertest.MetricsSink)
		p := start(t, c, 100, sink)
		w := metricsgen.New(metricsgen.Deltas, 100, 50)
		for range 6 {
			if err := p.ConsumeMetrics(context.Background(), w.Next()); err != nil {
				t.Fatal(err)
			}
		}
		for _, md := range sink.AllMetrics() {
			for _, rm := range md.ResourceMetrics().All() {
				m := rm.ScopeMetrics().At(0).Metrics().At(0)
				if m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
					t.Fatalf("%s: output is not cumulative", c.name)
				}
				dp := m.Sum().DataPoints().At(0)
				v := dp.IntValue()
				if dp.ValueType() == pmetric.NumberDataPointValueTypeDouble {
					v = int64(dp.DoubleValue())
				}
				totals[c.name] = append(totals[c.name], v)
			}
		}
		if len(totals[c.name]) != 300 {
			t.Fatalf("%s: %d output points for 300 inputs", c.name, len(totals[c.name]))
		}
	}
	ours, theirs := totals["oom_counter"], totals["delta_to_cumulative"]
	for i := range ours {
		if ours[i] != theirs[i] {
			t.Fatalf("point %d: oom_counter %d, delta_to_cumulative %d", i, ours[i], theirs[i])
		}
	}
}

// BenchmarkDeltaToCumulative: the same delta-sum workload (one container per resource, batches
// of 1000, every series already tracked) through both processors. Between two batches, untimed,
// 4 MiB of other memory is written, as the rest of a collector's work would, so the processor's
// state is out of the core's cache, and the batch just consumed is rewritten in place into the
// next one: the harness allocates nothing, so the garbage collector runs only for what the
// processor under test allocates (batches built afresh made it run every few batches, on the
// other core while the processor was timed, and the timing depended on -cpu). bytes/series is
// the heap the processor holds per tracked series after warm-up.
func BenchmarkDeltaToCumulative(b *testing.B) {
	for _, series := range []int{1_000, 10_000, 100_000} {
		for _, c := range contenders() {
			b.Run(fmt.Sprintf("series=%d/%s", series, c.name), func(b *testing.B) {
				w := metricsgen.New(metricsgen.Deltas, series, batchSize)
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				batches := make([]pmetric.Metrics, w.Rounds())
				for i := range batches {
					batches[i] = w.Next()
				}
				p := start(b, c, series, consumertest.NewNop())
				for _, md := range batches {
					if err := p.ConsumeMetrics(context.Background(), md); err != nil {
						b.Fatal(err)
					}
				}
				clear(batches) // the processor keeps none of them: what stays on the heap is its state
				runtime.GC()
				runtime.ReadMemStats(&after)
				held := float64(after.HeapAlloc) - float64(before.HeapAlloc)

				w.Bench(b, p.ConsumeMetrics)
				b.ReportMetric(held/float64(series), "bytes/series")
			})
		}
	}
}
