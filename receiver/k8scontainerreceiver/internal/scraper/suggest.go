// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/oomscope"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
)

// A limit the kills argue for (k8s.container.memory.limit.suggested): a container killed at its
// own limit needed at least that limit, and at least the most it was read using; a margin on
// the higher of the two leaves room for the growth between readings and what it was doing when
// killed.

const (
	// suggestMarginPercent is the margin: a quarter, so that a container killed once is not
	// killed again by the next 20 % of growth.
	suggestMarginPercent = 25
	// forgetSuggestionAfter is how many scrapes a suggestion outlives its container's last record.
	forgetSuggestionAfter = 6
)

// suggestion is a container's suggested limit, and the scrape that last recorded it.
type suggestion struct {
	bytes  int64
	scrape uint64
}

// suggest takes a kill of the container into its suggested limit; limit is the container's
// limit, tr its trajectory before the kill.
func (s *Scraper) suggest(key statsKey, limit int64, scope oomscope.Scope, scopeOK bool, tr trajectory.Trajectory, trOK bool) {
	if !scopeOK || scope != oomscope.Container {
		return
	}
	base := limit
	if trOK {
		base = max(base, tr.Peak)
	}
	if base <= 0 {
		return
	}
	const mib = 1 << 20
	v := (base*(100+suggestMarginPercent)/100 + mib - 1) / mib * mib
	if s.suggested == nil {
		s.suggested = map[statsKey]suggestion{}
	}
	if cur := s.suggested[key]; v > cur.bytes {
		s.suggested[key] = suggestion{bytes: v, scrape: s.scrapes}
	}
}

// recordSuggestion records the container's suggested limit, if its kills gave one.
func (s *Scraper) recordSuggestion(now pcommon.Timestamp, key statsKey) {
	sg, ok := s.suggested[key]
	if !ok {
		return
	}
	sg.scrape = s.scrapes
	s.suggested[key] = sg
	s.mb.RecordK8sContainerMemoryLimitSuggestedDataPoint(now, sg.bytes)
}

// forgetSuggestions drops the suggestions of containers no longer recorded.
func (s *Scraper) forgetSuggestions() {
	for k, sg := range s.suggested {
		if s.scrapes-sg.scrape > forgetSuggestionAfter {
			delete(s.suggested, k)
		}
	}
}
