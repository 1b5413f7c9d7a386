// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
)

// What the scraper keeps in the storage extension across restarts: its horizon, read at start
// and saved at every scrape. The system OOM event counts and the process kill counters are
// saved and restored beside the code that counts them.

// horizonKey holds, in the storage client, the horizon: when the receiver last handed a scrape
// on, as 8 bytes of Unix nanoseconds, then, as JSON, the terminations it knew that ended in that
// second. Its value is the name earlier versions stored the horizon under.
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
	switch {
	case err != nil:
		s.logger.Warn("Reading when the receiver last looked failed; kills while it was down are taken as history", zap.Error(err))
	case len(b) >= 8:
		horizon := time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
		var ended []termination.Key
		if len(b) > 8 {
			ended = []termination.Key{}
			if err := json.Unmarshal(b[8:], &ended); err != nil {
				s.logger.Warn("Discarding a damaged record of the terminations seen when the receiver last looked", zap.Error(err))
				ended = nil
			}
		}
		s.tracker.SetHorizon(horizon, ended)
		s.restoreSystemOOMCounts(ctx, horizon)
	case b != nil:
		s.logger.Warn("Discarding a damaged record of when the receiver last looked", zap.Int("bytes", len(b)))
	default:
		// The first run with this storage: from now on, whatever ends is news to a later run,
		// even if this one never hands a scrape on.
		// Nothing is known yet of what ended in this second: no terminations.
		s.saveHorizon(ctx, s.deps.Now(), nil)
	}
	return nil
}

// saveHorizon records that whatever ended before at has been reported, or is in the scrape about
// to be handed on; ended are the terminations known to have ended in at's second.
func (s *Scraper) saveHorizon(ctx context.Context, at time.Time, ended []termination.Key) {
	if s.storage == nil || at.IsZero() {
		return
	}
	record := binary.LittleEndian.AppendUint64(nil, uint64(at.UnixNano()))
	if ended != nil {
		keys, err := json.Marshal(ended)
		if err != nil {
			return // a Key always marshals
		}
		record = append(record, keys...)
	}
	err := s.storage.Set(ctx, horizonKey, record)
	if (err != nil) != s.storageFailing {
		s.storageFailing = err != nil
		if err != nil {
			s.logger.Warn("Recording when the receiver last looked failed; it is retried at every scrape", zap.Error(err))
		} else {
			s.logger.Info("Recording when the receiver last looked works again")
		}
	}
}
