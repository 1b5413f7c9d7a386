package metadata

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// WithInstanceStartTime sets start as the start time of the cumulative sums that restart from
// zero with each container instance (CPU time, page faults), and of nothing else: the other
// cumulative sums, such as k8s.container.restart.count, keep one start time per series, or
// their consumers would see a reset at every restart.
func WithInstanceStartTime(start pcommon.Timestamp) ResourceMetricsOption {
	return resourceMetricsOptionFunc(func(rm pmetric.ResourceMetrics) {
		metrics := rm.ScopeMetrics().At(0).Metrics()
		for i := range metrics.Len() {
			m := metrics.At(i)
			switch m.Name() {
			case "container.cpu.time", "container.memory.paging.faults":
				dps := m.Sum().DataPoints()
				for j := range dps.Len() {
					dps.At(j).SetStartTimestamp(start)
				}
			}
		}
	})
}

// WithUnknownOutcomes marks the k8s.container.oom_killed points at the given positions, in
// recording order, as having no recorded value: the instance ended, how is not known.
func WithUnknownOutcomes(positions []int) ResourceMetricsOption {
	return resourceMetricsOptionFunc(func(rm pmetric.ResourceMetrics) {
		metrics := rm.ScopeMetrics().At(0).Metrics()
		for i := range metrics.Len() {
			if m := metrics.At(i); m.Name() == "k8s.container.oom_killed" {
				dps := m.Gauge().DataPoints()
				for _, p := range positions {
					if p < dps.Len() {
						dps.At(p).SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
					}
				}
			}
		}
	})
}
