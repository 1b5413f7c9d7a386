// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
)

// What the scraper keeps in the storage extension across restarts: its horizon (when it last
// looked, what it knew had ended in that second, how far it had reported each container's ends),
// the process kill counters and the system OOM event counts. All are read at start, and written
// together, in one batch, before a scrape hands anything on: a scrape whose state could not be
// written hands on no kill, so that a restart never reports one twice.

// horizonKey holds, in the storage client, the horizon (containerstate.Horizon's encoding). Its
// value is the name earlier versions stored the horizon under.
const horizonKey = "last_looked"

// OpenStorage connects to the configured storage extension and reads the horizon of an earlier
// run of the receiver. Start calls it; a test that delivers the pod events itself calls it
// instead of Start.
func (s *Scraper) OpenStorage(ctx context.Context, host component.Host) error {
	if s.cfg.Storage == nil {
		return nil
	}
	ext, ok := host.GetExtensions()[*s.cfg.Storage]
	if !ok {
		return fmt.Errorf("storage: extension %q not found", *s.cfg.Storage)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return fmt.Errorf("storage: extension %q is not a storage extension", *s.cfg.Storage)
	}
	client, err := se.GetClient(ctx, component.KindReceiver, s.id, "")
	if err != nil {
		return fmt.Errorf("storage: extension %q: %w", *s.cfg.Storage, err)
	}
	s.storage = client
	s.restoreProcessCounters(ctx)
	b, err := client.Get(ctx, horizonKey)
	if err != nil {
		s.logger.Warn("Reading when the receiver last looked failed; kills while it was down are taken as history", zap.Error(err))
		return nil
	}
	if b == nil {
		// The first run with this storage: from now on, whatever ends is news to a later run,
		// even if this one never hands a scrape on. Nothing is known yet of what ended in this
		// second.
		s.saveFirstHorizon(ctx)
		return nil
	}
	var h containerstate.Horizon
	if err := h.UnmarshalBinary(b); err != nil {
		if h.At.IsZero() {
			s.logger.Warn("Discarding a damaged record of when the receiver last looked", zap.Int("bytes", len(b)))
			return nil
		}
		s.logger.Warn("Discarding a damaged record of what the receiver had reported when it last looked", zap.Error(err))
	}
	s.tracker.Resume(h)
	s.restoreSystemOOMCounts(ctx, h.At)
	return nil
}

// saveFirstHorizon records when a receiver whose storage held no record started. It records no
// ends: before its pods are listed it cannot tell an end in that second shown at the listing,
// history, from one after it, so a later run takes an end in that second as history.
func (s *Scraper) saveFirstHorizon(ctx context.Context) {
	b, err := containerstate.Horizon{At: s.deps.Now()}.MarshalBinary()
	if err == nil {
		err = s.storage.Set(ctx, horizonKey, b)
	}
	s.reportStorage(ctx, err)
}

// saveReported writes, in one batch, the horizon h and, when they changed (not nil), the
// process kill counters and the system OOM event counts: what the scrape is about to hand on
// is then reported for any later run.
func (s *Scraper) saveReported(ctx context.Context, h containerstate.Horizon, processCounters, systemOOMCounts []byte) error {
	if s.storage == nil {
		return nil
	}
	horizon, err := h.MarshalBinary()
	if err != nil {
		return err // a Horizon always marshals
	}
	ops := []*storage.Operation{storage.SetOperation(horizonKey, horizon)}
	if processCounters != nil {
		ops = append(ops, storage.SetOperation(processCountersKey, processCounters))
	}
	if systemOOMCounts != nil {
		ops = append(ops, storage.SetOperation(systemOOMCountsKey, systemOOMCounts))
	}
	err = s.storage.Batch(ctx, ops...)
	s.reportStorage(ctx, err)
	return err
}

// reportStorage counts a failed write, and logs when writing starts or stops failing.
func (s *Scraper) reportStorage(ctx context.Context, err error) {
	if err != nil {
		s.telemetry.K8sContainerStorageErrors.Add(ctx, 1)
	}
	if (err != nil) == s.storageFailing {
		return
	}
	s.storageFailing = err != nil
	if err != nil {
		s.logger.Warn("Recording what the receiver reports failed; OOM kills wait until it works again, container stats go on", zap.Error(err))
	} else {
		s.logger.Info("Recording what the receiver reports works again")
	}
}
