// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Persistence: the storage client, the configuration fingerprint, snapshots, restore, and the
// journal write that makes a batch's changes durable before the batch leaves.

package oomcounterprocessor

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/checkpoint"
)

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
