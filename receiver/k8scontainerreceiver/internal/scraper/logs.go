// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workingset"
)

// The logs signal: one record per OOM kill, with what explains it. Records come from the same
// scrape as the metrics, so a kill is a record exactly when it is a 1 the processor counts.

// recordKills adds a k8s.container.oom_kill record for each kill the tracker reports as news.
func (s *Scraper) recordKills(p *containerstate.Pod, c *containerstate.Container, kills []termination.Termination) {
	ctx := context.Background()
	key := statsKey{string(p.RuntimeUID), c.Name}
	for _, k := range kills {
		var opts []metadata.EventAttributeOption
		opts = append(opts, s.memoryAttributes(c)...)
		if ws, ok := s.workingSets.Explaining(key, k.StartedAt, k.FinishedAt); ok {
			opts = append(opts,
				metadata.WithContainerMemoryWorkingSetEventAttribute(ws.Bytes),
				metadata.WithContainerMemoryWorkingSetAgeEventAttribute(k.FinishedAt.Sub(ws.At).Seconds()))
		}
		if p.QOSClass != "" {
			opts = append(opts, metadata.WithK8sPodQosClassEventAttribute(p.QOSClass))
		}
		s.lb.RecordK8sContainerOomKillEvent(ctx, pcommon.NewTimestampFromTime(k.FinishedAt),
			k.Instance, runtimeID(k.ContainerID), int64(k.ExitCode), rfc3339(k.StartedAt), rfc3339(k.FinishedAt), opts...)
	}
}

func (s *Scraper) memoryAttributes(c *containerstate.Container) []metadata.EventAttributeOption {
	var opts []metadata.EventAttributeOption
	if c.MemoryLimit > 0 {
		opts = append(opts, metadata.WithK8sContainerMemoryLimitEventAttribute(c.MemoryLimit))
	}
	if c.MemoryRequest > 0 {
		opts = append(opts, metadata.WithK8sContainerMemoryRequestEventAttribute(c.MemoryRequest))
	}
	return opts
}

// rememberWorkingSets keeps this scrape's working sets for the kill records of later scrapes.
func (s *Scraper) rememberWorkingSets() {
	s.scrapes++
	s.workingSets.Remember(s.scrapes, func(yield func(statsKey, workingset.Reading) bool) {
		for k, st := range s.stats {
			if st.Memory == nil || st.Memory.WorkingSetBytes == nil {
				continue
			}
			if !yield(k, workingset.Reading{Bytes: int64(*st.Memory.WorkingSetBytes), At: st.Memory.Time.Time}) {
				return
			}
		}
	})
}

// emitLogs hands the records of this scrape to the logs pipeline. A refused batch is logged:
// the records are not repeated, as the counters they stand beside are not.
func (s *Scraper) emitLogs(ctx context.Context) {
	if s.logs == nil {
		return
	}
	logs := s.lb.Emit()
	if logs.LogRecordCount() == 0 {
		return
	}
	if err := s.logs.ConsumeLogs(ctx, logs); err != nil {
		s.logger.Warn("The logs pipeline refused OOM kill records", zap.Int("records", logs.LogRecordCount()), zap.Error(err))
	}
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
