// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package metricsgen

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
