// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package metricsgen builds the batches that benchmarks feed to the processors: one resource per
// container, as the k8s_container receiver emits them, or one metric for all containers, as a
// scrape of kube-state-metrics gives them, cycling through a fixed set of series with timestamps
// that move forward.
package metricsgen

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Kind is the shape of the generated metric.
type Kind int

const (
	// Flags: gauge k8s.container.oom_killed, 0/1, with k8s.container.restart_count. Every series
	// moves to its next instance each round; every other instance is OOM-killed.
	Flags Kind = iota
	// Deltas: delta monotonic sum container.oom.events, 1 per point.
	Deltas
	// FlagsInOneMetric: the points of Flags, all in one gauge of one resource, each container
	// named by data-point attributes.
	FlagsInOneMetric
)

// Metric names of the generated inputs.
const (
	FlagMetric  = "k8s.container.oom_killed"
	DeltaMetric = "container.oom.events"
)

// Workload hands out batches of BatchSize points, one per series, series after series.
type Workload struct {
	kind      Kind
	batchSize int
	uids      []string
	names     []string
	next      int
	round     int64
}

// New returns a workload over the given number of series.
func New(kind Kind, series, batchSize int) *Workload {
	w := &Workload{kind: kind, batchSize: batchSize, uids: make([]string, series), names: make([]string, series)}
	for i := range series {
		w.uids[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		w.names[i] = fmt.Sprintf("web-%d", i)
	}
	return w
}

// Rounds is how many batches cover every series once.
func (w *Workload) Rounds() int {
	return (len(w.uids) + w.batchSize - 1) / w.batchSize
}

// Next builds the next batch.
func (w *Workload) Next() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rms := md.ResourceMetrics()
	if w.kind == FlagsInOneMetric {
		points := rms.AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
		points.EnsureCapacity(w.batchSize)
		for range w.batchSize {
			points.AppendEmpty().Attributes().EnsureCapacity(6)
		}
	} else {
		rms.EnsureCapacity(w.batchSize)
		for range w.batchSize {
			rm := rms.AppendEmpty()
			rm.Resource().Attributes().EnsureCapacity(5)
			m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			if w.kind == Deltas {
				m.SetEmptySum().DataPoints().AppendEmpty()
			} else {
				m.SetEmptyGauge().DataPoints().AppendEmpty()
			}
		}
	}
	w.fill(md)
	return md
}

// Refill writes the next batch into md, a batch that Next or Refill returned and a processor has
// consumed since, reusing its memory: a benchmark then measures the processor, not the garbage
// collection of the batches it builds. A batch whose shape the processor changed (points
// dropped, metrics added or removed) is replaced by a new one from Next.
func (w *Workload) Refill(md pmetric.Metrics) pmetric.Metrics {
	if !w.fits(md) {
		return w.Next()
	}
	w.fill(md)
	return md
}

// fits tells whether md has the shape of the workload's batches, whatever a processor made of
// its metrics' names, types and values.
func (w *Workload) fits(md pmetric.Metrics) bool {
	rms := md.ResourceMetrics()
	resources, points := w.batchSize, 1
	if w.kind == FlagsInOneMetric {
		resources, points = 1, w.batchSize
	}
	if rms.Len() != resources {
		return false
	}
	for _, rm := range rms.All() {
		if rm.ScopeMetrics().Len() != 1 || rm.ScopeMetrics().At(0).Metrics().Len() != 1 {
			return false
		}
		switch m := rm.ScopeMetrics().At(0).Metrics().At(0); {
		case m.Type() == pmetric.MetricTypeSum && m.Sum().DataPoints().Len() == points:
		case m.Type() == pmetric.MetricTypeGauge && w.kind != Deltas && m.Gauge().DataPoints().Len() == points:
		default:
			return false
		}
	}
	return true
}

// fill writes the next batch into md, which has the workload's shape.
func (w *Workload) fill(md pmetric.Metrics) {
	rms := md.ResourceMetrics()
	if w.kind == FlagsInOneMetric {
		points := flagPoints(rms.At(0).ScopeMetrics().At(0).Metrics().At(0))
		for j := range points.Len() {
			i, ts := w.advance()
			dp := points.At(j)
			w.containerAttributes(dp.Attributes(), i)
			w.flag(dp, ts)
		}
		return
	}
	for j := range rms.Len() {
		i, ts := w.advance()
		rm := rms.At(j)
		w.containerAttributes(rm.Resource().Attributes(), i)
		m := rm.ScopeMetrics().At(0).Metrics().At(0)
		if w.kind == Deltas {
			delta(m, ts)
		} else {
			w.flag(flagPoints(m).At(0), ts)
		}
	}
}

// advance picks the next series and the timestamp of its point. Timestamps advance with the
// round, so every series sees newer points each time.
func (w *Workload) advance() (int, pcommon.Timestamp) {
	if w.next == len(w.uids) {
		w.next = 0
		w.round++
	}
	i := w.next
	w.next++
	return i, pcommon.Timestamp(1_700_000_000_000_000_000 + w.round*10_000_000_000 + int64(i))
}

func (w *Workload) containerAttributes(attrs pcommon.Map, i int) {
	attrs.PutStr("k8s.namespace.name", "bench")
	attrs.PutStr("k8s.pod.name", w.names[i])
	attrs.PutStr("k8s.pod.uid", w.uids[i])
	attrs.PutStr("k8s.container.name", "app")
	attrs.PutStr("k8s.node.name", "node-1")
}

// flagPoints makes m the gauge k8s.container.oom_killed again and returns its points, moving
// them back from the sum a processor made of it.
func flagPoints(m pmetric.Metric) pmetric.NumberDataPointSlice {
	m.SetName(FlagMetric)
	m.SetDescription("")
	m.SetUnit("")
	if m.Type() == pmetric.MetricTypeGauge {
		return m.Gauge().DataPoints()
	}
	points := m.Sum().DataPoints()
	gauge := m.SetEmptyGauge().DataPoints()
	points.MoveAndAppendTo(gauge)
	return gauge
}

// flag fills a point of k8s.container.oom_killed: every series moves to its next instance each
// round, and every other instance is OOM-killed.
func (w *Workload) flag(dp pmetric.NumberDataPoint, ts pcommon.Timestamp) {
	dp.SetFlags(pmetric.DefaultDataPointFlags)
	dp.SetStartTimestamp(0)
	dp.SetTimestamp(ts)
	dp.SetIntValue(w.round % 2)
	dp.Attributes().PutInt("k8s.container.restart_count", w.round)
}

// delta makes m the delta sum container.oom.events with one point of value 1.
func delta(m pmetric.Metric, ts pcommon.Timestamp) {
	m.SetName(DeltaMetric)
	m.SetDescription("")
	m.SetUnit("")
	s := m.Sum()
	s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	s.SetIsMonotonic(true)
	dp := s.DataPoints().At(0)
	dp.Attributes().Clear()
	dp.SetFlags(pmetric.DefaultDataPointFlags)
	dp.SetStartTimestamp(ts - 10_000_000_000)
	dp.SetTimestamp(ts)
	dp.SetIntValue(1)
}
