// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package metricsgen

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

func TestWorkloadCyclesThroughSeriesWithNewerTimestamps(t *testing.T) {
	t.Parallel()
	w := New(Flags, 3, 2)
	assert.Equal(t, 2, w.Rounds())
	seen := map[string][]int64{}
	for range 3 {
		md := w.Next()
		require.Equal(t, 2, md.ResourceMetrics().Len())
		for _, rm := range md.ResourceMetrics().All() {
			uid, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
			dp := rm.ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0)
			seen[uid.Str()] = append(seen[uid.Str()], int64(dp.Timestamp()))
		}
	}
	require.Len(t, seen, 3)
	for uid, ts := range seen {
		require.Len(t, ts, 2, uid)
		assert.Less(t, ts[0], ts[1], uid)
	}
}

func TestFlagsInOneMetricNameEachContainerByItsPoint(t *testing.T) {
	t.Parallel()
	w := New(FlagsInOneMetric, 3, 3)
	md := w.Next()
	require.Equal(t, 1, md.ResourceMetrics().Len())
	points := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints()
	require.Equal(t, 3, points.Len())
	uids := map[string]bool{}
	for _, dp := range points.All() {
		uid, ok := dp.Attributes().Get("k8s.pod.uid")
		require.True(t, ok)
		uids[uid.Str()] = true
		_, ok = dp.Attributes().Get("k8s.container.restart_count")
		assert.True(t, ok)
	}
	assert.Len(t, uids, 3)
}

// TestRefillGivesWhatNextGives: a batch that went through a processor (metrics renamed, gauges
// turned into cumulative sums, values, start times, flags and attributes changed) and is refilled
// is the batch Next would have built.
func TestRefillGivesWhatNextGives(t *testing.T) {
	t.Parallel()
	var marshaler pmetric.JSONMarshaler
	for _, kind := range []Kind{Flags, FlagsInOneMetric, Deltas} {
		fresh, reused := New(kind, 5, 3), New(kind, 5, 3)
		md := reused.Next()
		fresh.Next()
		for round := range 4 {
			consume(md)
			md = reused.Refill(md)
			want, err := marshaler.MarshalMetrics(fresh.Next())
			require.NoError(t, err)
			got, err := marshaler.MarshalMetrics(md)
			require.NoError(t, err)
			require.JSONEq(t, string(want), string(got), "kind %d round %d", kind, round)
		}
	}
}

// consume changes a batch as a processor that turns it into counters would.
func consume(md pmetric.Metrics) {
	for _, rm := range md.ResourceMetrics().All() {
		for _, m := range rm.ScopeMetrics().At(0).Metrics().All() {
			var points pmetric.NumberDataPointSlice
			if m.Type() == pmetric.MetricTypeGauge {
				points = pmetric.NewNumberDataPointSlice()
				m.Gauge().DataPoints().MoveAndAppendTo(points)
				points.MoveAndAppendTo(m.SetEmptySum().DataPoints())
			}
			points = m.Sum().DataPoints()
			m.SetName("counter")
			m.SetDescription("counter")
			m.SetUnit("{event}")
			m.Sum().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			for _, dp := range points.All() {
				dp.Attributes().Remove("k8s.container.restart_count")
				dp.SetStartTimestamp(1)
				dp.SetIntValue(42)
				dp.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
			}
		}
	}
}

// TestRefillAllocatesNothingForDeltas: a refilled batch of deltas reuses all its memory.
func TestRefillAllocatesNothingForDeltas(t *testing.T) {
	w := New(Deltas, 50, 10)
	md := w.Next()
	allocs := testing.AllocsPerRun(10, func() {
		consume(md)
		md = w.Refill(md)
	})
	assert.Zero(t, allocs)
}
