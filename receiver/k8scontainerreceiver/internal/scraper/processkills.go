// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/cgroupoom"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/processkill"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
)

// Process kills inside living containers: each scrape reads every instance's OOM kill counter,
// from the kubelet or the cgroup filesystem, and internal/processkill turns them into the kills
// since the previous scrape.

// processCountersKey holds, in the storage client, the counters as last read: after a restart,
// the kills while the receiver was down are the growth since then.
const processCountersKey = "process_oom_counters"

// collectProcessKills reads the counters and works out the kills since the previous scrape.
// Read from the cgroups of the tracked containers, a reading before the pod list arrived holds
// none of the containers there are: it primes nothing.
func (s *Scraper) collectProcessKills(ctx context.Context) bool {
	listed := s.podsListed == nil || s.podsListed()
	var pods processkill.Pods
	if listed {
		s.livePods.take(s.tracker)
		pods = &s.livePods
	}
	complete := true
	var counters []kubelet.OOMCounter
	if s.cgroups != nil {
		complete = listed
		counters = s.readCgroups()
	} else {
		var err error
		if counters, err = s.kubelet.OOMEvents(ctx, s.endpoint); err != nil {
			s.reportKubelet(err)
			return false
		}
	}
	if s.processKills.Read(counters, s.scrapes, complete, pods) {
		s.processCountersChanged = true
	}
	return true
}

// processCounters returns the counters to save, nil if they did not change since last saved.
func (s *Scraper) processCounters() []byte {
	if !s.processCountersChanged {
		return nil
	}
	b, err := s.processKills.Save()
	if err != nil {
		return nil // strings and numbers always marshal
	}
	return b
}

// absorbInnerKills makes each kill the pod status showed inside an instance that ended (OOMKilled
// though PID 1 exited by itself) one process kill, unless the instance's counter already
// counted it.
func (s *Scraper) absorbInnerKills(pending containerstate.Pending) {
	pending.InnerKills(func(p *containerstate.Pod, c *containerstate.Container, k termination.Termination) {
		if s.processKills.Absorb(runtimeID(k.ContainerID), string(p.RuntimeUID), c.Name) {
			s.processCountersChanged = true
		}
	})
}

// recordProcessKills records one container's kills since the previous scrape: a delta point,
// 0 included, and a record when there were any. A container shown twice (under a deleted mirror
// pod that waits to report, and its successor) has them on one of the two.
func (s *Scraper) recordProcessKills(now pcommon.Timestamp, p *containerstate.Pod, c *containerstate.Container) bool {
	key := statsKey{string(p.RuntimeUID), c.Name}
	kills := s.processKills.Take(key.podUID, key.container)
	s.mb.RecordK8sContainerProcessOomKilledDataPoint(now, kills.N)
	if kills.N == 0 || (s.logs == nil && s.podEvents == nil) {
		return false
	}
	scope, scopeOK := s.scopeOfScrape(p)
	var v victim
	report := ""
	if s.lastScrape != 0 {
		v, report, scope, scopeOK = s.kernelScope(p, kills.ContainerID, s.lastScrape.AsTime(), now.AsTime(), scope, scopeOK)
	}
	s.addPodEvent(p, c, kills.ContainerID+"@"+strconv.FormatInt(int64(now), 10), now.AsTime(), processKillMessage(c, kills.N, scope, scopeOK)+victimPhrase(v, report))
	if s.logs == nil {
		return false
	}
	opts := s.memoryAttributes(c)
	if ws, ok := s.workingSets.Latest(key); ok {
		opts = append(opts, metadata.WithContainerMemoryWorkingSetEventAttribute(ws.Bytes))
	}
	if p.QOSClass != "" {
		opts = append(opts, metadata.WithK8sPodQosClassEventAttribute(p.QOSClass))
	}
	opts = append(opts, scopeOption(scope, scopeOK)...)
	opts = append(opts, trajectoryOptions(s.trajectoryToNow(key, c, now))...)
	if report != "" {
		opts = append(opts, victimOptions(v, report)...)
	}
	s.lb.RecordK8sContainerProcessOomKillEvent(context.Background(), now, kills.N, kills.ContainerID, false, opts...)
	return true
}

// trajectoryToNow is how the memory of the running instance came to this scrape, which saw its
// processes' kills: the readings of the instance the Summary lists, before the scrape's second.
func (s *Scraper) trajectoryToNow(key statsKey, c *containerstate.Container, now pcommon.Timestamp) (trajectory.Trajectory, bool) {
	st := s.stats[key]
	if st == nil || st.StartTime.IsZero() {
		return trajectory.Trajectory{}, false
	}
	return s.trajectories.Explain(key, instanceKey(st.StartTime.Time), c.MemoryLimit, now.AsTime())
}

// readCgroups reads the kernel's counter of each running container instance. An instance whose
// cgroup is not found is left out, as the kubelet leaves out one it does not list.
func (s *Scraper) readCgroups() []kubelet.OOMCounter {
	s.cgroupInstances = s.cgroupInstances[:0]
	s.tracker.Each(func(p *containerstate.Pod, c *containerstate.Container) {
		if id := runtimeID(c.ContainerID); id != "" {
			s.cgroupInstances = append(s.cgroupInstances, cgroupoom.Instance{PodUID: string(p.RuntimeUID), Container: c.Name, ContainerID: id})
		}
	})
	values, err := s.cgroups.Read(s.cgroupInstances)
	// Logged when the problem changes, not at every scrape.
	problem := ""
	if err != nil {
		problem = err.Error()
	}
	if problem != "" && problem != s.cgroupProblem {
		s.logger.Warn("Reading some containers' OOM kill counters from the cgroup filesystem failed", zap.Error(err))
	}
	s.cgroupProblem = problem
	counters := make([]kubelet.OOMCounter, 0, len(values))
	if s.limitHitCounts == nil {
		s.limitHitCounts, s.stallTimes = map[string]uint64{}, map[string]stallTime{}
	}
	clear(s.limitHitCounts)
	clear(s.stallTimes)
	for _, in := range s.cgroupInstances {
		if v, ok := values[in.ContainerID]; ok {
			if v.HasLimitHits {
				s.limitHitCounts[in.ContainerID] = v.LimitHits
			}
			if v.HasStall {
				s.stallTimes[in.ContainerID] = stallTime{some: v.StallSome, full: v.StallFull}
			}
			counters = append(counters, kubelet.OOMCounter{PodUID: in.PodUID, Container: in.Container, ContainerID: in.ContainerID, Value: v.Kills, GroupKills: v.GroupKills})
		}
	}
	return counters
}

func (s *Scraper) restoreProcessCounters(ctx context.Context) {
	b, err := s.storage.Get(ctx, processCountersKey)
	if err != nil || b == nil {
		return
	}
	if err := s.processKills.Restore(b); err != nil {
		s.logger.Warn("Discarding a damaged record of the process OOM kill counters", zap.Error(err))
	}
}

// livePods is what the pod list shows at a reading of the counters (see processkill.Pods).
type livePods struct {
	shown map[string]bool
	whole map[statsKey]bool
}

// take holds what the tracker shows now.
func (l *livePods) take(tracker *containerstate.Tracker) {
	if l.shown == nil {
		l.shown, l.whole = map[string]bool{}, map[statsKey]bool{}
	}
	clear(l.shown)
	clear(l.whole)
	tracker.Each(func(p *containerstate.Pod, c *containerstate.Container) {
		if id := runtimeID(c.ContainerID); id != "" {
			l.shown[id] = true
		}
		if c.WatchedWhole() {
			l.whole[statsKey{string(p.RuntimeUID), c.Name}] = true
		}
	})
}

func (l *livePods) Shows(containerID string) bool { return l.shown[containerID] }

func (l *livePods) WatchedWhole(podUID, name string) bool {
	return l.whole[statsKey{podUID, name}]
}

// stallTime is a container's memory.pressure totals, in microseconds.
type stallTime struct{ some, full uint64 }
