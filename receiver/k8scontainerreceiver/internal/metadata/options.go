// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package metadata

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// WithInstanceStartTime sets start as the start time of the cumulative sums that restart from
// zero with each container instance (CPU time, page faults, limit hits), and of nothing else: the other
// cumulative sums, such as k8s.container.restart.count, keep one start time per series, or
// their consumers would see a reset at every restart.
func WithInstanceStartTime(start pcommon.Timestamp) ResourceMetricsOption {
	return resourceMetricsOptionFunc(func(rm pmetric.ResourceMetrics) {
		metrics := rm.ScopeMetrics().At(0).Metrics()
		for i := range metrics.Len() {
			m := metrics.At(i)
			switch m.Name() {
			case "container.cpu.time", "container.memory.paging.faults", "k8s.container.memory.limit_hits":
				dps := m.Sum().DataPoints()
				for j := range dps.Len() {
					dps.At(j).SetStartTimestamp(start)
				}
			}
		}
	})
}

// FlagPoint is what the k8s.container.oom_killed points carry beyond their value.
type FlagPoint struct {
	// Start is the time since which the receiver watched the container, on a point that reports
	// what it saw happen after it; 0 on a point that may report history.
	Start pcommon.Timestamp
	// Unknown marks a point with no recorded value: the instance ended, how is not known.
	Unknown bool
}

// WithFlagPoints sets, on the k8s.container.oom_killed points in recording order, the start
// time and the no-recorded-value flag of points[i].
func WithFlagPoints(points []FlagPoint) ResourceMetricsOption {
	return resourceMetricsOptionFunc(func(rm pmetric.ResourceMetrics) {
		metrics := rm.ScopeMetrics().At(0).Metrics()
		for i := range metrics.Len() {
			if m := metrics.At(i); m.Name() == "k8s.container.oom_killed" {
				dps := m.Gauge().DataPoints()
				for j := range min(dps.Len(), len(points)) {
					dp := dps.At(j)
					dp.SetStartTimestamp(points[j].Start)
					if points[j].Unknown {
						dp.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
					}
				}
			}
		}
	})
}

// WithEventSeverity sets, on every log record of the resource, the severity of an OOM kill
// (WARN) and when the receiver observed it.
func WithEventSeverity(observed pcommon.Timestamp) ResourceLogsOption {
	return resourceLogsOptionFunc(func(rl plog.ResourceLogs) {
		records := rl.ScopeLogs().At(0).LogRecords()
		for i := range records.Len() {
			r := records.At(i)
			r.SetSeverityNumber(plog.SeverityNumberWarn)
			r.SetSeverityText("WARN")
			r.SetObservedTimestamp(observed)
		}
	})
}

// WithDeltaStart sets start, the previous scrape, as the start time of the delta sums: each
// point counts what happened since then.
func WithDeltaStart(start pcommon.Timestamp) ResourceMetricsOption {
	return resourceMetricsOptionFunc(func(rm pmetric.ResourceMetrics) {
		metrics := rm.ScopeMetrics().At(0).Metrics()
		for i := range metrics.Len() {
			m := metrics.At(i)
			if m.Type() != pmetric.MetricTypeSum || m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityDelta {
				continue
			}
			dps := m.Sum().DataPoints()
			for j := range dps.Len() {
				dps.At(j).SetStartTimestamp(start)
			}
		}
	})
}
