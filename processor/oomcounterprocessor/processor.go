// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/checkpoint"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/persist"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/store"
)

// rule is a Counter prepared for the data path.
type rule struct {
	output      string
	description string
	occurrence  string
	flagMode    counting.Mode
}

type counterProcessor struct {
	cfg       *Config
	id        component.ID
	logger    *zap.Logger
	telemetry *metadata.TelemetryBuilder
	rules     map[string]rule
	outputs   map[string]struct{}
	policy    counting.GapPolicy
	store     *store.Store

	// The store's clock counts whole seconds since epoch: four bytes per series instead of eight.
	now      func() time.Time
	epoch    time.Time
	staleSec uint32

	fingerprint uint64
	client      storage.Client
	// journal is nil without storage.
	journal *persist.Journal
	// journalWarn keeps a storage outage from flooding the log: one warning per minute.
	journalWarn rateLimit

	// lifeMu orders Start and Shutdown: each takes effect once, whatever the host calls.
	lifeMu  sync.Mutex
	started bool
	stopped bool
	stop    chan struct{}
	done    sync.WaitGroup

	reasonOutOfOrder metric.AddOption
	reasonLimit      metric.AddOption
	reasonInvalid    metric.AddOption
}

func newCounterProcessor(set processor.Settings, cfg *Config) (*counterProcessor, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	p := &counterProcessor{
		cfg:       cfg,
		id:        set.ID,
		logger:    set.Logger,
		telemetry: tb,
		rules:     make(map[string]rule, len(cfg.Counters)),
		outputs:   make(map[string]struct{}, len(cfg.Counters)),
		store:     store.New(cfg.MaxSeries),
		now:       time.Now,
		staleSec:  uint32(math.Ceil(cfg.MaxStale.Seconds())),
		stop:      make(chan struct{}),

		reasonOutOfOrder: reason("out_of_order"),
		reasonLimit:      reason("limit"),
		reasonInvalid:    reason("invalid"),
	}
	p.epoch = p.now()
	if cfg.GapPolicy == GapUpperBound {
		p.policy = counting.UpperBound
	}
	for _, c := range cfg.Counters {
		mode := counting.Edge
		if c.OccurrenceAttribute != "" {
			mode = counting.Occurrence
		}
		p.rules[c.Metric] = rule{
			output:      c.Output,
			description: "Cumulative count of " + c.Metric + " events, kept by the oom_counter processor.",
			occurrence:  c.OccurrenceAttribute,
			flagMode:    mode,
		}
		p.outputs[c.Output] = struct{}{}
	}
	p.fingerprint = fingerprint(cfg.Counters, cfg.IdentifyingAttributes)
	return p, nil
}

func reason(r string) metric.AddOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
}

// fingerprint names the counting configuration a checkpoint was written under: state kept for
// other rules, or keyed by other identifying attributes, would be read with the wrong meaning.
func fingerprint(counters []Counter, identifying []string) uint64 {
	lines := make([]string, len(counters))
	for i, c := range counters {
		lines[i] = c.Metric + "\x00" + c.Output + "\x00" + c.OccurrenceAttribute
	}
	sort.Strings(lines)
	d := xxhash.New()
	for _, l := range lines {
		_, _ = d.WriteString(l)
		_, _ = d.WriteString("\x01")
	}
	ids := slices.Clone(identifying)
	sort.Strings(ids)
	_, _ = d.WriteString("\x02identifying")
	for _, a := range ids {
		_, _ = d.WriteString("\x00")
		_, _ = d.WriteString(a)
	}
	return d.Sum64()
}

// clock returns the store's notion of now.
func (p *counterProcessor) clock() uint32 {
	return uint32(p.now().Sub(p.epoch) / time.Second)
}

func (p *counterProcessor) start(ctx context.Context, host component.Host) error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.started || p.stopped {
		return nil
	}
	if p.cfg.Storage != nil {
		client, err := storageClient(ctx, host, *p.cfg.Storage, p.id)
		if err != nil {
			return err
		}
		p.client = client
		p.journal = persist.New(client, p.fingerprint, p.store.Range)
		p.restore(ctx)
	}
	p.started = true
	// Sweeping every max_stale/2 bounds how long a series outlives max_stale: it is forgotten
	// at most max_stale/2 plus one clock second after it became stale.
	p.done.Go(func() { p.every(p.cfg.MaxStale/2, p.expire) })
	if p.client != nil {
		p.done.Go(func() { p.every(p.cfg.CheckpointInterval, p.checkpoint) })
	}
	return nil
}

func storageClient(ctx context.Context, host component.Host, id, self component.ID) (storage.Client, error) {
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return nil, fmt.Errorf("storage: extension %q not found", id)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return nil, fmt.Errorf("storage: extension %q is not a storage extension", id)
	}
	client, err := se.GetClient(ctx, component.KindProcessor, self, "")
	if err != nil {
		return nil, fmt.Errorf("storage: extension %q: %w", id, err)
	}
	return client, nil
}

// shutdown stops the goroutines, saves the state a last time and closes the storage client. An
// expired context stops the wait for the goroutines, never the final save nor the close: the
// save is attempted with that context (its failure is logged and counted) and the client is
// always closed, so the storage extension is not left with an open client.
func (p *counterProcessor) shutdown(ctx context.Context) error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	defer p.telemetry.Shutdown()
	if !p.started {
		return nil
	}
	// The series of this instance are no longer tracked once it is gone.
	defer func() { p.telemetry.OomCounterSeriesTracked.Add(context.Background(), int64(-p.store.Len())) }()
	close(p.stop)
	waited := make(chan struct{})
	go func() {
		p.done.Wait()
		close(waited)
	}()
	var waitErr error
	select {
	case <-waited:
	case <-ctx.Done():
		// A checkpoint still running holds the journal: the final save below waits for it.
		waitErr = fmt.Errorf("waiting for the background work to stop: %w", ctx.Err())
	}
	if p.client == nil {
		return waitErr
	}
	saveErr := p.save(ctx)
	if saveErr != nil {
		p.logger.Error("The final save of the counter state failed", zap.Error(saveErr))
	}
	return errors.Join(waitErr, saveErr, p.client.Close(ctx))
}

// every runs f every d until the processor shuts down.
func (p *counterProcessor) every(d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			f()
		}
	}
}

func (p *counterProcessor) expire() {
	now := p.clock()
	if now <= p.staleSec {
		return
	}
	// A series recorded at clock second s was last seen before s+1; it is stale once more than
	// staleSec whole seconds lie between that and now.
	if n := p.store.Expire(now - p.staleSec); n > 0 {
		ctx := context.Background()
		p.telemetry.OomCounterSeriesExpired.Add(ctx, int64(n))
		p.telemetry.OomCounterSeriesTracked.Add(ctx, int64(-n))
	}
}

func (p *counterProcessor) checkpoint() {
	if err := p.save(context.Background()); err != nil {
		p.logger.Warn("Saving the counter state failed; it is retried at the next checkpoint", zap.Error(err))
	}
}

// save writes a snapshot of every series and drops the journal.
func (p *counterProcessor) save(ctx context.Context) error {
	if err := p.journal.Snapshot(ctx); err != nil {
		p.telemetry.OomCounterCheckpointErrors.Add(ctx, 1)
		return fmt.Errorf("saving counter state: %w", err)
	}
	return nil
}

// restore loads the saved state, then writes it back as one snapshot, so the journal starts
// afresh. Damaged or foreign parts are discarded with a warning: their counters then restart
// visibly (new StartTimestamp), which is honest, rather than wrong.
func (p *counterProcessor) restore(ctx context.Context) {
	now := p.clock()
	restored, saved := 0, 0
	r := p.journal.Restore(ctx, func(e checkpoint.Entry) {
		saved++
		e.Series.LastSeen = now
		if p.store.Put(e.Key, e.Series) {
			restored++
		}
	})
	for _, problem := range r.Problems {
		p.telemetry.OomCounterCheckpointErrors.Add(ctx, 1)
		p.logger.Warn("Discarding part of the saved counter state; the counters it held start afresh", zap.Error(problem))
	}
	p.telemetry.OomCounterSeriesTracked.Add(ctx, int64(restored))
	if saved > 0 || len(r.Problems) > 0 {
		p.logger.Info("Restored counter state", zap.Int("series", restored), zap.Int("saved", saved),
			zap.Int("snapshot", r.Snapshot), zap.Int("journal_segments", r.Segments))
		if err := p.save(ctx); err != nil {
			p.logger.Warn("Compacting the restored counter state failed; the journal goes on", zap.Error(err))
		}
	}
}

// rateLimit lets one event through per period.
type rateLimit struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many events were held back since the last time.
func (r *rateLimit) allow(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < time.Minute {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

// persistBatch makes the changes of a batch durable before its points leave. When that fails
// the batch is refused with the error instead of passed on: a count that is not in storage, if
// exported, could be followed after a crash by a lower count under the same StartTimestamp,
// which every backend reads as a reset. Refusing makes the receiver's batch fail (and retry,
// when it retries); the state stays applied in memory, and the next batch writes a full
// snapshot before anything more leaves, so a retried or later point carries the total safely.
func (p *counterProcessor) persistBatch(ctx context.Context, b *batch) error {
	var segment []byte
	if b.changed {
		segment = b.segment.Finish()
	} else if !p.journal.Dirty() {
		return nil
	}
	err := p.journal.Append(ctx, segment)
	if err == nil {
		return nil
	}
	p.telemetry.OomCounterCheckpointErrors.Add(ctx, 1)
	if ok, held := p.journalWarn.allow(time.Now()); ok {
		p.logger.Warn("Saving the counts of a batch failed; the batch is refused so no count leaves that a crash could take back",
			zap.Error(err), zap.Int("failures_not_logged", held))
	}
	return fmt.Errorf("oom_counter: counts not saved, batch refused: %w", err)
}

// tally gathers a batch's telemetry, recorded once per batch instead of once per point.
type tally struct {
	counted, increments, unattributed, newSeries int64
	outOfOrder, limit, invalid                   int64
}

func (p *counterProcessor) record(ctx context.Context, t *tally) {
	tb := p.telemetry
	add := func(c metric.Int64Counter, n int64, opts ...metric.AddOption) {
		if n != 0 {
			c.Add(ctx, n, opts...)
		}
	}
	add(tb.OomCounterPointsCounted, t.counted)
	add(tb.OomCounterIncrements, t.increments)
	add(tb.OomCounterRestartsUnattributed, t.unattributed)
	add(tb.OomCounterPointsDropped, t.outOfOrder, p.reasonOutOfOrder)
	add(tb.OomCounterPointsDropped, t.limit, p.reasonLimit)
	add(tb.OomCounterPointsDropped, t.invalid, p.reasonInvalid)
	add(tb.OomCounterSeriesRefused, t.limit)
	if t.newSeries != 0 {
		tb.OomCounterSeriesTracked.Add(ctx, t.newSeries)
	}
}

func (p *counterProcessor) processMetrics(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	b := batch{p: p, now: p.clock()}
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
			converted := false
			// Counters appended below (kept input, passed-through points) are not inputs again.
			for k, n := 0, metrics.Len(); k < n; k++ {
				m := metrics.At(k)
				r, ok := p.rules[m.Name()]
				if !ok {
					continue
				}
				if !resourceHashed {
					resourceKey = p.resourceKey(&b.hasher, rm.Resource().Attributes())
					resourceHashed = true
				}
				if !scopeHashed {
					scopeKey = b.hasher.Scope(sm.Scope())
					scopeHashed = true
				}
				metricKey := b.hasher.Metric(resourceKey, scopeKey, r.output)
				b.convert(metrics, m, r, metricKey)
				converted = true
			}
			if converted {
				metrics.RemoveIf(p.emptyCounter)
			}
		}
	}
	p.record(ctx, &b.tally)
	if p.journal != nil {
		if err := p.persistBatch(ctx, &b); err != nil {
			return md, err
		}
	}
	return md, nil
}

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
	tally  tally
	// segment gathers the series this batch changed, for the journal (with storage only).
	segment checkpoint.Encoder
	changed bool
}

// convert turns metric m, an input of rule r, into the counter. With keep_input the input stays
// and the counter is added beside it.
func (b *batch) convert(metrics pmetric.MetricSlice, m pmetric.Metric, r rule, metricKey identity.Key) {
	var mode counting.Mode
	switch {
	case m.Type() == pmetric.MetricTypeGauge:
		mode = r.flagMode
	case m.Type() == pmetric.MetricTypeSum && m.Sum().AggregationTemporality() == pmetric.AggregationTemporalityDelta:
		mode = counting.Delta
	default:
		// A cumulative sum, histogram... under a counter's input name is not something this rule
		// can count: it passes through untouched and its points are counted as invalid.
		b.tally.invalid += int64(dataPointCount(m))
		return
	}
	if b.p.cfg.KeepInput {
		input := m
		m = metrics.AppendEmpty()
		input.CopyTo(m)
	}

	input := inputShape{name: m.Name(), description: m.Description(), unit: m.Unit()}
	var points pmetric.NumberDataPointSlice
	if mode == counting.Delta {
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
	points.RemoveIf(func(dp pmetric.NumberDataPoint) bool {
		pt, ok := parsePoint(dp, mode, r.occurrence)
		if !ok {
			b.tally.invalid++
			return true
		}
		key := identity.Series(metricKey, b.hasher.Map(dp.Attributes(), r.occurrence))
		u := b.p.store.Apply(key, mode, b.p.policy, pt, b.now)
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
		case u.Outcome == counting.OutOfOrder:
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
	if mode == counting.Delta {
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
		if mode != counting.Occurrence {
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
	if mode == counting.Delta {
		return pt, true
	}
	if pt.Value > 1 {
		return pt, false
	}
	if mode == counting.Occurrence {
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
