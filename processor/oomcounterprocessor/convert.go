// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The pdata walk: how a counter's input metric becomes the cumulative sum, point by point, and
// the validation of each input point. A batch is walked twice: collect hashes the series key of
// every input point, emit applies the points and writes the counters.

package oomcounterprocessor

import (
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/checkpoint"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

// resourceKey hashes what identifies a series in its resource: the identifying attributes, or
// every attribute when none are configured.
func (p *counterProcessor) resourceKey(h *identity.Hasher, attrs pcommon.Map) identity.Key {
	if len(p.cfg.IdentifyingAttributes) == 0 {
		return h.Map(attrs, "")
	}
	return h.Select(attrs, p.cfg.IdentifyingAttributes)
}

// emptyCounter tells a counter all of whose points were dropped: an empty metric is noise.
func (p *counterProcessor) emptyCounter(m pmetric.Metric) bool {
	if _, ok := p.outputs[m.Name()]; !ok || m.Type() != pmetric.MetricTypeSum {
		return false
	}
	return m.Sum().DataPoints().Len() == 0
}

// batch is the per-call working set of processMetrics.
type batch struct {
	p      *counterProcessor
	now    uint32
	hasher identity.Hasher
	// lastScope remembers the latest scope without attributes that was hashed: a batch usually
	// holds one scope, repeated in every resource.
	lastScope struct {
		name, version string
		key           identity.Key
		ok            bool
	}
	// keys holds the series key of every input point, in walk order, from collect to emit.
	keys  []identity.Key
	next  int
	tally tally
	// segment gathers the series this batch changed, for the journal (with storage only).
	segment checkpoint.Encoder
	changed bool
}

// scopeKey hashes an instrumentation scope, or reuses the key of the same scope met before.
func (b *batch) scopeKey(s pcommon.InstrumentationScope) identity.Key {
	if s.Attributes().Len() != 0 {
		return b.hasher.Scope(s)
	}
	last := &b.lastScope
	if !last.ok || s.Name() != last.name || s.Version() != last.version {
		last.name, last.version, last.key, last.ok = s.Name(), s.Version(), b.hasher.Scope(s), true
	}
	return last.key
}

// collect appends the series key of every point of the batch's counter inputs to b.keys, in
// walk order, without changing the batch.
func (b *batch) collect(md pmetric.Metrics) {
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rm := rms.At(i)
		resourceHashed := false
		var resourceKey identity.Key
		sms := rm.ScopeMetrics()
		for j := range sms.Len() {
			sm := sms.At(j)
			metrics := sm.Metrics()
			scopeHashed := false
			var scopeKey identity.Key
			for k := range metrics.Len() {
				m := metrics.At(k)
				r := b.p.ruleFor(m.Name())
				if r == nil {
					continue
				}
				_, points, ok := inputPoints(m, r)
				if !ok {
					continue
				}
				if !resourceHashed {
					resourceKey = b.p.resourceKey(&b.hasher, rm.Resource().Attributes())
					resourceHashed = true
				}
				if !scopeHashed {
					scopeKey = b.scopeKey(sm.Scope())
					scopeHashed = true
				}
				metricKey := b.hasher.Metric(resourceKey, scopeKey, r.output)
				for l := range points.Len() {
					b.keys = append(b.keys, identity.Series(metricKey, b.hasher.Map(points.At(l).Attributes(), r.occurrence)))
				}
			}
		}
	}
}

// emit turns the counter inputs into counters, taking the series keys from b.keys in the order
// collect appended them.
func (b *batch) emit(md pmetric.Metrics) {
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			metrics := sms.At(j).Metrics()
			emptied := false
			// Counters appended below (kept input, passed-through points) are not inputs again.
			for k, n := 0, metrics.Len(); k < n; k++ {
				m := metrics.At(k)
				r := b.p.ruleFor(m.Name())
				if r == nil {
					continue
				}
				if b.convert(metrics, m, r) {
					emptied = true
				}
			}
			if emptied {
				metrics.RemoveIf(b.p.emptyCounter)
			}
		}
	}
}

// inputPoints tells how the points of m, an input of rule r, count, and returns them. A
// cumulative sum, histogram... under a counter's input name is not something the rule can count.
func inputPoints(m pmetric.Metric, r *rule) (counting.Mode, pmetric.NumberDataPointSlice, bool) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return r.flagMode, m.Gauge().DataPoints(), true
	case pmetric.MetricTypeSum:
		if s := m.Sum(); s.AggregationTemporality() == pmetric.AggregationTemporalityDelta {
			return counting.ModeDelta, s.DataPoints(), true
		}
	}
	return 0, pmetric.NumberDataPointSlice{}, false
}

// convert turns metric m, an input of rule r, into the counter, its points' series keys taken
// from b.keys. With keep_input the input stays and the counter is added beside it. It reports
// whether the counter was left without points.
func (b *batch) convert(metrics pmetric.MetricSlice, m pmetric.Metric, r *rule) bool {
	mode, points, ok := inputPoints(m, r)
	if !ok {
		// It passes through untouched and its points are counted as invalid.
		b.tally.invalid += int64(dataPointCount(m))
		return false
	}
	keys := b.keys[b.next : b.next+points.Len()]
	b.next += len(keys)
	if b.p.cfg.KeepInput {
		input := m
		m = metrics.AppendEmpty()
		input.CopyTo(m)
	}

	input := inputShape{name: m.Name(), description: m.Description(), unit: m.Unit()}
	if mode == counting.ModeDelta {
		input.monotonic = m.Sum().IsMonotonic()
		points = m.Sum().DataPoints()
	} else {
		// Move the gauge's points into a sum without copying them: the gauge stays reachable
		// through its points until they are moved.
		gaugePoints := m.Gauge().DataPoints()
		points = m.SetEmptySum().DataPoints()
		gaugePoints.MoveAndAppendTo(points)
		m.SetUnit("{event}")
	}
	m.SetName(r.output)
	m.SetDescription(r.description)
	sum := m.Sum()
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	sum.SetIsMonotonic(true)

	var passthrough pmetric.NumberDataPointSlice
	i := 0
	points.RemoveIf(func(dp pmetric.NumberDataPoint) bool {
		key := keys[i]
		i++
		pt, ok := parsePoint(dp, mode, r.occurrence)
		if !ok {
			b.tally.invalid++
			return true
		}
		u := b.p.store.Apply(key, mode, b.p.cfg.GapPolicy, pt, b.now)
		switch {
		case !u.Tracked:
			b.tally.limit++
			if !b.p.cfg.KeepInput {
				// The series is not tracked: its point, not yet changed, passes on as it came.
				if passthrough == (pmetric.NumberDataPointSlice{}) {
					passthrough = passthroughMetric(metrics, input, mode)
				}
				dp.CopyTo(passthrough.AppendEmpty())
			}
			return true
		case u.Outcome == counting.OutcomeOutOfOrder:
			b.tally.outOfOrder++
			return true
		}
		b.tally.counted++
		b.tally.increments += int64(u.Added)
		b.tally.unattributed += int64(u.Unattributed)
		if u.New {
			b.tally.newSeries++
		}
		if u.Changed && b.p.journal != nil {
			if !b.changed {
				b.segment.Begin(b.p.fingerprint, 4)
				b.changed = true
			}
			b.segment.Add(key, u.Series)
		}
		dp.SetIntValue(int64(u.Series.Count))
		dp.SetStartTimestamp(pcommon.Timestamp(u.Series.Start))
		if pt.Unknown {
			// A point of unknown outcome becomes a count like any other.
			dp.SetFlags(pmetric.DefaultDataPointFlags)
		}
		if r.occurrence != "" {
			dp.Attributes().Remove(r.occurrence)
		}
		return false
	})
	return points.Len() == 0
}

// inputShape is what a counter's input metric looked like before it was converted.
type inputShape struct {
	name, description, unit string
	monotonic               bool
}

// passthroughMetric appends a metric shaped like the input, for points of untracked series.
func passthroughMetric(metrics pmetric.MetricSlice, input inputShape, mode counting.Mode) pmetric.NumberDataPointSlice {
	m := metrics.AppendEmpty()
	m.SetName(input.name)
	m.SetDescription(input.description)
	m.SetUnit(input.unit)
	if mode == counting.ModeDelta {
		s := m.SetEmptySum()
		s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		s.SetIsMonotonic(input.monotonic)
		return s.DataPoints()
	}
	return m.SetEmptyGauge().DataPoints()
}

func dataPointCount(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	}
	return 0
}

// parsePoint checks a data point and reads what counting needs. Invalid input (no timestamp, a
// flag that is not 0 or 1, a negative, fractional or NaN delta, a missing or non-int occurrence)
// is refused, never guessed at. A flag with an occurrence and no recorded value says that the
// occurrence ended with an unknown outcome.
func parsePoint(dp pmetric.NumberDataPoint, mode counting.Mode, occurrenceAttr string) (counting.Point, bool) {
	pt := counting.Point{Timestamp: uint64(dp.Timestamp()), Start: uint64(dp.StartTimestamp())}
	if pt.Timestamp == 0 {
		return pt, false
	}
	if dp.Flags().NoRecordedValue() {
		if mode != counting.ModeOccurrence {
			return pt, false
		}
		pt.Unknown = true
		return pt, readOccurrence(dp, occurrenceAttr, &pt)
	}
	switch dp.ValueType() {
	case pmetric.NumberDataPointValueTypeInt:
		v := dp.IntValue()
		if v < 0 {
			return pt, false
		}
		pt.Value = uint64(v)
	case pmetric.NumberDataPointValueTypeDouble:
		v := dp.DoubleValue()
		if !(v >= 0 && v <= counting.MaxCount) || v != math.Trunc(v) {
			return pt, false
		}
		pt.Value = uint64(v)
	default:
		return pt, false
	}
	if mode == counting.ModeDelta {
		return pt, true
	}
	if pt.Value > 1 {
		return pt, false
	}
	if mode == counting.ModeOccurrence {
		return pt, readOccurrence(dp, occurrenceAttr, &pt)
	}
	return pt, true
}

func readOccurrence(dp pmetric.NumberDataPoint, occurrenceAttr string, pt *counting.Point) bool {
	v, ok := dp.Attributes().Get(occurrenceAttr)
	if !ok || v.Type() != pcommon.ValueTypeInt || v.Int() < 0 {
		return false
	}
	pt.Occurrence = v.Int()
	return true
}
