// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The processor itself: its type, Start and Shutdown, the background sweeps, and the
// ConsumeMetrics entry that walks a batch and records its telemetry.

package oomcounterprocessor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/persist"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/store"
)

// rule is a Counter prepared for the data path.
type rule struct {
	input       string
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
	// rules is searched in order: the rules are few, and most metric names differ in length
	// from every input name, which a comparison sees at once, sooner than a map hashes the name.
	rules   []rule
	outputs map[string]struct{}
	store   *store.Store
	// spareKeys holds the key buffers of finished batches for the next ones. Unlike a sync.Pool
	// it is not emptied by every garbage collection, which a busy collector runs every few
	// batches.
	spareKeys chan []identity.Key

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
		rules:     make([]rule, 0, len(cfg.Counters)),
		outputs:   make(map[string]struct{}, len(cfg.Counters)),
		store:     store.New(cfg.MaxSeries),
		now:       time.Now,
		staleSec:  uint32(math.Ceil(cfg.MaxStale.Seconds())),
		stop:      make(chan struct{}),
		spareKeys: make(chan []identity.Key, runtime.GOMAXPROCS(0)),

		reasonOutOfOrder: reason("out_of_order"),
		reasonLimit:      reason("limit"),
		reasonInvalid:    reason("invalid"),
	}
	p.epoch = p.now()
	for _, c := range cfg.Counters {
		mode := counting.ModeEdge
		if c.OccurrenceAttribute != "" {
			mode = counting.ModeOccurrence
		}
		p.rules = append(p.rules, rule{
			input:       c.Metric,
			output:      c.Output,
			description: "Cumulative count of " + c.Metric + " events, kept by the oom_counter processor.",
			occurrence:  c.OccurrenceAttribute,
			flagMode:    mode,
		})
		p.outputs[c.Output] = struct{}{}
	}
	p.fingerprint = fingerprint(cfg.Counters, cfg.IdentifyingAttributes)
	return p, nil
}

func reason(r string) metric.AddOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
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
	b := batch{p: p, now: p.clock(), keys: p.borrowKeys()}
	b.collect(md)
	// emit looks the series up one by one, each behind its shard's lock: loading them all into
	// the cache first lets their cache misses overlap instead of following each other.
	p.store.Touch(b.keys)
	b.emit(md)
	p.giveBackKeys(b.keys)
	p.record(ctx, &b.tally)
	if p.journal != nil {
		if err := p.persistBatch(ctx, &b); err != nil {
			return md, err
		}
	}
	return md, nil
}

// borrowKeys returns room for the series keys of a batch, kept from an earlier batch if one is
// spare: in steady state a batch allocates nothing for them.
func (p *counterProcessor) borrowKeys() []identity.Key {
	select {
	case keys := <-p.spareKeys:
		return keys[:0]
	default:
		return nil
	}
}

// giveBackKeys keeps keys for a later batch, unless as many are kept as batches can run at once,
// or keys grew for an outsized batch: memory held for one such batch is not held forever.
func (p *counterProcessor) giveBackKeys(keys []identity.Key) {
	if cap(keys) > maxSpareKeys {
		return
	}
	select {
	case p.spareKeys <- keys:
	default:
	}
}

// maxSpareKeys bounds the memory kept for the keys of one batch: 1 MiB.
const maxSpareKeys = 1 << 16

// ruleFor returns the rule whose input is the metric name, or nil.
func (p *counterProcessor) ruleFor(name string) *rule {
	for i := range p.rules {
		if p.rules[i].input == name {
			return &p.rules[i]
		}
	}
	return nil
}
