// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
)

// The logs signal: one record per OOM kill, with what explains it. Records come from the same
// scrape as the metrics, so a kill is a record exactly when it is a 1 the processor counts.

// workingSet is a container's working set as the Summary API reported it.
type workingSet struct {
	bytes int64
	at    time.Time
}

// workingSets are a container's two latest readings of different times: the Summary goes on
// listing a killed instance for about a second with what is left of it, stamped, to the second
// as the kill's end is, in the second of the kill. The reading before that one explains the kill.
type workingSets struct {
	latest, before workingSet
	// scrape is the number of the scrape that read latest; older readings are forgotten.
	scrape uint64
}

// explaining returns the last reading of the killed instance k taken before the second of its
// end, and while it ran.
func (w workingSets) explaining(k termination.Termination) (workingSet, bool) {
	for _, ws := range [...]workingSet{w.latest, w.before} {
		if !ws.at.IsZero() && ws.at.Before(k.FinishedAt) && (k.StartedAt.IsZero() || !ws.at.Before(k.StartedAt)) {
			return ws, true
		}
	}
	return workingSet{}, false
}

// recordKills adds a k8s.container.oom_kill record for each kill the tracker reports as news.
func (s *containerScraper) recordKills(p *containerstate.Pod, c *containerstate.Container, kills []termination.Termination) {
	ctx := context.Background()
	readings := s.workingSets[statsKey{string(p.UID), c.Name}]
	for _, k := range kills {
		var opts []metadata.EventAttributeOption
		opts = append(opts, s.memoryAttributes(c)...)
		if ws, ok := readings.explaining(k); ok {
			opts = append(opts,
				metadata.WithContainerMemoryWorkingSetEventAttribute(ws.bytes),
				metadata.WithContainerMemoryWorkingSetAgeEventAttribute(k.FinishedAt.Sub(ws.at).Seconds()))
		}
		if p.QOSClass != "" {
			opts = append(opts, metadata.WithK8sPodQosClassEventAttribute(p.QOSClass))
		}
		s.lb.RecordK8sContainerOomKillEvent(ctx, pcommon.NewTimestampFromTime(k.FinishedAt),
			k.Instance, runtimeID(k.ContainerID), int64(k.ExitCode), rfc3339(k.StartedAt), rfc3339(k.FinishedAt), opts...)
	}
}

func (s *containerScraper) memoryAttributes(c *containerstate.Container) []metadata.EventAttributeOption {
	var opts []metadata.EventAttributeOption
	if c.MemoryLimit > 0 {
		opts = append(opts, metadata.WithK8sContainerMemoryLimitEventAttribute(c.MemoryLimit))
	}
	if c.MemoryRequest > 0 {
		opts = append(opts, metadata.WithK8sContainerMemoryRequestEventAttribute(c.MemoryRequest))
	}
	return opts
}

// rememberWorkingSets keeps this scrape's working sets for the kill records of later scrapes,
// and forgets those of containers the Summary no longer shows.
func (s *containerScraper) rememberWorkingSets() {
	s.scrapes++
	for k, st := range s.stats {
		if st.Memory == nil || st.Memory.WorkingSetBytes == nil {
			continue
		}
		w := s.workingSets[k]
		reading := workingSet{bytes: int64(*st.Memory.WorkingSetBytes), at: st.Memory.Time.Time}
		if reading.at.After(w.latest.at) {
			w.before = w.latest
		}
		w.latest, w.scrape = reading, s.scrapes
		s.workingSets[k] = w
	}
	for k, ws := range s.workingSets {
		// A container that ended keeps its last reading a few scrapes: its kill may show in
		// the pod status only after the Summary stopped listing it.
		if s.scrapes-ws.scrape > keepWorkingSetScrapes {
			delete(s.workingSets, k)
		}
	}
}

// keepWorkingSetScrapes is how many scrapes a reading outlives the Summary listing it.
const keepWorkingSetScrapes = 6

// emitLogs hands the records of this scrape to the logs pipeline. A refused batch is logged:
// the records are not repeated, as the counters they stand beside are not.
func (s *containerScraper) emitLogs(ctx context.Context) {
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
