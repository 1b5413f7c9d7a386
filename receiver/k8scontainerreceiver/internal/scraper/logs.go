// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workingset"
)

// The logs signal: one record per OOM kill, with what explains it. Records come from the same
// scrape as the metrics, so a kill is a record exactly when it is a 1 the processor counts.

// recordKills adds a k8s.container.oom_kill record, and with pod_events a pod Event, for each
// kill the tracker reports as news.
func (s *Scraper) recordKills(p *containerstate.Pod, c *containerstate.Container, kills []termination.Termination) {
	ctx := context.Background()
	key := statsKey{string(p.RuntimeUID), c.Name}
	for _, k := range kills {
		scope, scopeOK := s.scopeOfEnd(p, k.FinishedAt)
		var v victim
		report := ""
		if !k.FinishedAt.IsZero() {
			v, report, scope, scopeOK = s.kernelScope(p, runtimeID(k.ContainerID), k.FinishedAt.Add(-reportBefore), k.FinishedAt.Add(time.Second), scope, scopeOK)
		}
		tr, trOK := s.trajectoryOf(key, c, k)
		s.suggest(key, c.MemoryLimit, scope, scopeOK, tr, trOK)
		s.addPodEvent(p, c, killID(k), k.FinishedAt, containerKillMessage(c, k, scope, scopeOK, tr, trOK)+victimPhrase(v, report))
		if s.logs == nil {
			continue
		}
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
		opts = append(opts, scopeOption(scope, scopeOK)...)
		opts = append(opts, trajectoryOptions(tr, trOK)...)
		if report != "" {
			opts = append(opts, victimOptions(v, report)...)
		}
		s.lb.RecordK8sContainerOomKillEvent(ctx, pcommon.NewTimestampFromTime(k.FinishedAt),
			k.Instance, runtimeID(k.ContainerID), int64(k.ExitCode), true, rfc3339(k.StartedAt), rfc3339(k.FinishedAt), opts...)
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

// rememberWorkingSets keeps this scrape's working sets for the kill records of later scrapes:
// the latest of each container, and those of the last minutes of each instance.
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
	for k, st := range s.stats {
		if st.Memory == nil || st.Memory.WorkingSetBytes == nil {
			continue
		}
		s.trajectories.Add(k, instanceKey(st.StartTime.Time), trajectory.Sample{Bytes: int64(*st.Memory.WorkingSetBytes), At: st.Memory.Time.Time})
	}
	s.trajectories.EndScrape()
}

// instanceKey names a container instance by the start the Summary API gives it, to the second:
// the container's creation, which the runtime's start that the pod status gives follows by up to
// seconds.
func instanceKey(created time.Time) string {
	return strconv.FormatInt(created.Unix(), 10)
}

// maxCreateToStart is how long before the start its pod status gives the instance whose
// trajectory explains a kill may have been created.
const maxCreateToStart = 30 * time.Second

// trajectoryOf is how the killed instance's memory came to the kill: the trajectory of the
// newest instance created at most maxCreateToStart before the killed one started, if it was
// read after that start. The instance before it, also created then, was read before.
func (s *Scraper) trajectoryOf(key statsKey, c *containerstate.Container, k termination.Termination) (trajectory.Trajectory, bool) {
	if k.StartedAt.IsZero() {
		return trajectory.Trajectory{}, false
	}
	started := k.StartedAt.Truncate(time.Second)
	for back := time.Duration(0); back <= maxCreateToStart; back += time.Second {
		tr, ok := s.trajectories.Explain(key, instanceKey(started.Add(-back)), c.MemoryLimit, k.FinishedAt)
		if ok {
			return tr, !tr.Last.Before(started)
		}
	}
	return trajectory.Trajectory{}, false
}

// trajectoryOptions are a trajectory's record attributes.
func trajectoryOptions(tr trajectory.Trajectory, ok bool) []metadata.EventAttributeOption {
	if !ok {
		return nil
	}
	opts := []metadata.EventAttributeOption{metadata.WithK8sContainerMemoryWorkingSetPeakEventAttribute(tr.Peak)}
	if tr.GrowthRateKnown {
		opts = append(opts, metadata.WithK8sContainerMemoryWorkingSetGrowthRateEventAttribute(tr.GrowthRate))
	}
	if tr.From80Known {
		opts = append(opts, metadata.WithK8sOomTimeFrom80PercentEventAttribute(tr.From80.Seconds()))
	}
	if tr.Class != trajectory.Unknown {
		opts = append(opts, metadata.WithK8sOomGrowthClassEventAttribute(tr.Class.String()))
	}
	return opts
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
