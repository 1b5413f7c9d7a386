// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// simTally gathers what the seeded runs of a simulation report: how many runs hit each form,
// and the seeds that failed, by failure category. Runs report from goroutines of their own.
type simTally[F ~string] struct {
	mu       sync.Mutex
	hits     map[F]int
	failures map[string][]uint64
}

func newSimTally[F ~string]() *simTally[F] {
	return &simTally[F]{hits: map[F]int{}, failures: map[string][]uint64{}}
}

// add records one run: the forms it hit, and its failure category, "" if it passed.
func (s *simTally[F]) add(seed uint64, forms map[F]bool, failed string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range forms {
		s.hits[f]++
	}
	if failed != "" {
		s.failures[failed] = append(s.failures[failed], seed)
	}
}

// report logs how many of runs hit each of forms and, when enforce is set, fails for each form
// fewer than minHits runs hit, so that a change of the draws cannot quietly stop testing one;
// then fails once per failure category, naming its seeds.
func (s *simTally[F]) report(t *testing.T, runs int, forms []F, minHits int, enforce bool) {
	t.Helper()
	var tally strings.Builder
	for _, f := range forms {
		fmt.Fprintf(&tally, "\n  %5d  %s", s.hits[f], f)
	}
	t.Logf("runs that hit each form:%s", tally.String())
	if enforce {
		for _, f := range forms {
			if s.hits[f] < minHits {
				t.Errorf("only %d of %d runs hit the form %q; at least %d must", s.hits[f], runs, f, minHits)
			}
		}
	}
	categories := make([]string, 0, len(s.failures))
	for c := range s.failures {
		categories = append(categories, c)
	}
	sort.Strings(categories)
	for _, c := range categories {
		seeds := s.failures[c]
		slices.Sort(seeds)
		t.Errorf("%d runs failed with %q; seeds %v", len(seeds), c, seeds[:min(len(seeds), 20)])
	}
}
