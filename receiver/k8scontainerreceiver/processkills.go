// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"encoding/json"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/cgroupoom"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
)

// Process kills inside living containers: the kubelet's cAdvisor counts the OOM kills of each
// container instance (container_oom_events_total on /metrics/cadvisor), and the pod status
// shows none of them while the container lives. Each scrape turns every instance's counter
// into the kills since the previous scrape.

// processCounter is one container instance's counter as last read.
type processCounter struct {
	PodUID    string `json:"pod_uid"`
	Container string `json:"container"`
	Value     uint64 `json:"value"`
	// scrape is the number of the scrape that last saw it.
	scrape uint64
}

// processKills are one container's kills since the previous scrape.
type processKills struct {
	n int64
	// containerID is the instance of the latest kills.
	containerID string
}

// processCountersKey holds, in the storage client, the counters as last read: after a restart,
// the kills while the receiver was down are the growth since then.
const processCountersKey = "process_oom_counters"

// keepCounterScrapes is how many scrapes a counter outlives its last reading: an instance that
// is missing from one answer and back in the next must not count again from zero.
const keepCounterScrapes = 6

// collectProcessKills reads the counters and works out the kills since the previous scrape. A
// counter read for the first time is a baseline, unless an earlier reading (of this run, or
// restored from storage) exists: then its instance started since, and all its kills are new.
func (s *containerScraper) collectProcessKills(ctx context.Context) bool {
	clear(s.processKills)
	var counters []kubelet.OOMCounter
	if s.cgroups != nil {
		counters = s.readCgroups()
	} else {
		var err error
		if counters, err = s.kubelet.OOMEvents(ctx, s.endpoint); err != nil {
			s.reportKubelet(err)
			return false
		}
	}
	changed := false
	for _, c := range counters {
		prev := s.processCounters[c.ContainerID]
		var n uint64
		switch {
		case prev == nil:
			if s.processPrimed {
				n = c.Value
			}
			prev = &processCounter{PodUID: c.PodUID, Container: c.Container}
			s.processCounters[c.ContainerID] = prev
			changed = true
		case c.Value >= prev.Value:
			n = c.Value - prev.Value
		default:
			// The kubelet restarted and its cAdvisor counts again from zero.
			n = c.Value
		}
		if c.Value != prev.Value {
			changed = true
		}
		prev.Value, prev.scrape = c.Value, s.scrapes
		if n > 0 {
			k := statsKey{c.PodUID, c.Container}
			pk := s.processKills[k]
			pk.n += int64(min(n, 1<<62))
			pk.containerID = c.ContainerID
			s.processKills[k] = pk
		}
	}
	for id, c := range s.processCounters {
		if s.scrapes-c.scrape > keepCounterScrapes {
			delete(s.processCounters, id)
			changed = true
		}
	}
	s.processPrimed = true
	if changed {
		s.saveProcessCounters(ctx)
	}
	return true
}

// recordProcessKills records one container's kills since the previous scrape: a delta point,
// 0 included, and a record when there were any.
func (s *containerScraper) recordProcessKills(now pcommon.Timestamp, p *containerstate.Pod, c *containerstate.Container) bool {
	key := statsKey{string(p.UID), c.Name}
	pk := s.processKills[key]
	s.mb.RecordK8sContainerProcessOomKilledDataPoint(now, pk.n)
	if pk.n == 0 || s.logs == nil {
		return false
	}
	opts := s.memoryAttributes(c)
	if ws, ok := s.workingSets[key]; ok {
		opts = append(opts, metadata.WithContainerMemoryWorkingSetEventAttribute(ws.latest.bytes))
	}
	if p.QOSClass != "" {
		opts = append(opts, metadata.WithK8sPodQosClassEventAttribute(p.QOSClass))
	}
	s.lb.RecordK8sContainerProcessOomKillEvent(context.Background(), now, pk.n, pk.containerID, opts...)
	return true
}

// readCgroups reads the kernel's counter of each running container instance. An instance whose
// cgroup is not found is left out, as the kubelet leaves out one it does not list.
func (s *containerScraper) readCgroups() []kubelet.OOMCounter {
	s.cgroupInstances = s.cgroupInstances[:0]
	s.tracker.Each(func(p *containerstate.Pod, c *containerstate.Container) {
		if id := runtimeID(c.ContainerID); id != "" {
			s.cgroupInstances = append(s.cgroupInstances, cgroupoom.Instance{PodUID: string(p.UID), Container: c.Name, ContainerID: id})
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
	for _, in := range s.cgroupInstances {
		if v, ok := values[in.ContainerID]; ok {
			counters = append(counters, kubelet.OOMCounter{PodUID: in.PodUID, Container: in.Container, ContainerID: in.ContainerID, Value: v})
		}
	}
	return counters
}

func (s *containerScraper) saveProcessCounters(ctx context.Context) {
	if s.storage == nil {
		return
	}
	b, err := json.Marshal(s.processCounters)
	if err == nil {
		err = s.storage.Set(ctx, processCountersKey, b)
	}
	if err != nil {
		s.logger.Warn("Recording the process OOM kill counters failed; kills while the receiver is down may be missed", zap.Error(err))
	}
}

func (s *containerScraper) restoreProcessCounters(ctx context.Context) {
	b, err := s.storage.Get(ctx, processCountersKey)
	if err != nil || b == nil {
		return
	}
	restored := map[string]*processCounter{}
	if err := json.Unmarshal(b, &restored); err != nil {
		s.logger.Warn("Discarding a damaged record of the process OOM kill counters", zap.Error(err))
		return
	}
	s.processCounters = restored
	s.processPrimed = true
}
