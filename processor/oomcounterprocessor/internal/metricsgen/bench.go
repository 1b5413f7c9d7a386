// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package metricsgen

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Bench times consume on one batch per iteration of b and reports ns/point. Between two batches,
// untimed, it writes 4 MiB of other memory, so the consumer's state is out of the core's cache as
// it is when batches arrive seconds apart, and rewrites the batch just consumed into the next
// (Refill), so the garbage collector runs for what consume allocates, not for the benchmark.
func (w *Workload) Bench(b *testing.B, consume func(context.Context, pmetric.Metrics) error) {
	md := w.Next()
	other := make([]byte, 4<<20)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < len(other); i += 64 {
			other[i]++
		}
		md = w.Refill(md)
		b.StartTimer()
		if err := consume(context.Background(), md); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*w.batchSize), "ns/point")
}
