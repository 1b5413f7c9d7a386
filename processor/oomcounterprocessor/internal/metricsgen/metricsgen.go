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
		m := rms.AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(FlagMetric)
		points := m.SetEmptyGauge().DataPoints()
		points.EnsureCapacity(w.batchSize)
		for range w.batchSize {
			i, ts := w.advance()
			dp := points.AppendEmpty()
			w.containerAttributes(dp.Attributes(), i, 6)
			w.flag(dp, ts)
		}
		return md
	}
	rms.EnsureCapacity(w.batchSize)
	for range w.batchSize {
		i, ts := w.advance()
		rm := rms.AppendEmpty()
		w.containerAttributes(rm.Resource().Attributes(), i, 5)
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		switch w.kind {
		case Flags:
			m.SetName(FlagMetric)
			w.flag(m.SetEmptyGauge().DataPoints().AppendEmpty(), ts)
		case Deltas:
			m.SetName(DeltaMetric)
			s := m.SetEmptySum()
			s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
			s.SetIsMonotonic(true)
			dp := s.DataPoints().AppendEmpty()
			dp.SetStartTimestamp(ts - 10_000_000_000)
			dp.SetTimestamp(ts)
			dp.SetIntValue(1)
		}
	}
	return md
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

func (w *Workload) containerAttributes(attrs pcommon.Map, i, capacity int) {
	attrs.EnsureCapacity(capacity)
	attrs.PutStr("k8s.namespace.name", "bench")
	attrs.PutStr("k8s.pod.name", w.names[i])
	attrs.PutStr("k8s.pod.uid", w.uids[i])
	attrs.PutStr("k8s.container.name", "app")
	attrs.PutStr("k8s.node.name", "node-1")
}

// flag fills a point of k8s.container.oom_killed: every series moves to its next instance each
// round, and every other instance is OOM-killed.
func (w *Workload) flag(dp pmetric.NumberDataPoint, ts pcommon.Timestamp) {
	dp.SetTimestamp(ts)
	dp.SetIntValue(w.round % 2)
	dp.Attributes().PutInt("k8s.container.restart_count", w.round)
}
