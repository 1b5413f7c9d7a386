// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"time"

	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/cgroupoom"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/oomscope"
)

// Which limit each kill hit (k8s.oom.scope): with the cgroup source, each scrape reads the limit
// hits of the tracked pods' cgroups and of the kubepods cgroups into a short history, which
// bounds the kills this scrape and the next few report; the pods' own are also
// k8s.pod.memory.limit_hits.

// limits is what the scraper keeps for the scopes of its kill records.
type limits struct {
	history oomscope.History
	// at is when this scrape's reading was taken, previous the one of the scrape before; zero
	// until taken. latest is when the newest reading was, this scrape's or one taken for a kill.
	at, previous, latest time.Time
	// drawn tells that this scrape took a reading for a kill, after every end it reports.
	drawn bool
	// podHits are the pods' limit hits of the latest reading, by pod UID.
	podHits map[string]cgroupoom.LimitHits
	pods    []string
	seen    map[string]struct{}
	problem string
}

// readLimits takes this scrape's reading of the limit hits of the tracked pods.
func (s *Scraper) readLimits() {
	if s.cgroups == nil {
		return
	}
	l := &s.limits
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	clear(l.seen)
	l.pods = l.pods[:0]
	s.tracker.Each(func(p *containerstate.Pod, _ *containerstate.Container) {
		uid := string(p.RuntimeUID)
		if _, ok := l.seen[uid]; !ok {
			l.seen[uid] = struct{}{}
			l.pods = append(l.pods, uid)
		}
	})
	l.previous, l.at = l.at, s.takeReading()
	l.drawn = false
}

// takeReading reads the limit hits of the pods of this scrape's reading into the history, and
// returns when. (It does not ask the tracker, whose drain may be under way.)
func (s *Scraper) takeReading() time.Time {
	l := &s.limits
	reading, err := s.cgroups.ReadLimits(l.pods)
	problem := ""
	if err != nil {
		problem = err.Error()
	}
	if problem != "" && problem != l.problem {
		s.logger.Warn("Reading the memory limit hits of some pods' cgroups failed: their kill records name no scope", zap.Error(err))
	}
	l.problem = problem
	l.latest = s.deps.Now()
	l.history.Add(l.latest, reading)
	l.podHits = reading.Pods
	return l.latest
}

// scopeOfEnd is the scope of the kill of a container that ended, OOM-killed, at end (to the
// second). The end is in the pod status the scraper holds, so the kill is over by now: when no
// reading since end+1s bounds it yet, one taken now does, once per scrape.
func (s *Scraper) scopeOfEnd(p *containerstate.Pod, end time.Time) (oomscope.Scope, bool) {
	if s.cgroups == nil || end.IsZero() {
		return "", false
	}
	before := end.Add(time.Second)
	if s.limits.latest.Before(before) {
		// One reading does for every kill of the scrape: each end it reports came before.
		if !s.limits.drawn {
			s.takeReading()
			s.limits.drawn = true
		}
		if s.limits.latest.Before(before) {
			before = s.limits.latest
		}
	}
	return s.limits.history.Scope(oomscope.Kill{
		PodUID: string(p.RuntimeUID), After: end.Add(-time.Second), Before: before,
		PodLimit: p.MemoryLimit > 0,
	})
}

// scopeOfScrape is the scope of the process kills counted by this scrape.
func (s *Scraper) scopeOfScrape(p *containerstate.Pod) (oomscope.Scope, bool) {
	if s.cgroups == nil || s.limits.previous.IsZero() {
		return "", false
	}
	return s.limits.history.Scope(oomscope.Kill{
		PodUID: string(p.RuntimeUID), After: s.limits.previous, Before: s.limits.at,
		PodLimit: p.MemoryLimit > 0,
	})
}

// scopeOption is the k8s.oom.scope attribute of a scope, none when it is not known.
func scopeOption(scope oomscope.Scope, ok bool) []metadata.EventAttributeOption {
	if !ok {
		return nil
	}
	return []metadata.EventAttributeOption{metadata.WithK8sOomScopeEventAttribute(string(scope))}
}
