// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package counting holds the counting rule: how one series' state moves with each input point.
// It knows nothing of pdata, maps or locks, so the rule can be read, tested and fuzzed alone.
package counting

// Mode is the kind of input a series counts.
type Mode uint8

const (
	// ModeOccurrence counts a 0/1 flag that names the occurrence (instance) it is about, such as
	// k8s.container.oom_killed with k8s.container.restart_count: each occurrence counts at most once.
	ModeOccurrence Mode = iota
	// ModeEdge counts a 0/1 flag without an occurrence: each rising edge 0 -> 1 counts once.
	ModeEdge
	// ModeDelta accumulates a delta monotonic sum.
	ModeDelta
)

// GapPolicy says how occurrences skipped by a jump are counted. Its values are the strings of
// the processor's gap_policy setting, so the configuration decodes straight into it; any value
// but GapPolicyUpperBound, the zero value included, counts as GapPolicyLowerBound.
type GapPolicy string

const (
	// GapPolicyLowerBound counts only what was seen.
	GapPolicyLowerBound GapPolicy = "lower_bound"
	// GapPolicyUpperBound counts every skipped occurrence as one more event.
	GapPolicyUpperBound GapPolicy = "upper_bound"
)

// Point is one input data point, already checked for validity by the caller.
type Point struct {
	Timestamp uint64
	// Start is the StartTimestamp of a delta point; for a flag, the time since which its source
	// watched the occurrence (0: unknown), which makes a first point with value 1 news.
	Start uint64
	// Occurrence is the occurrence a flag is about (Occurrence mode only).
	Occurrence int64
	// Value is the flag (0 or 1) or the delta.
	Value uint64
	// Unknown tells that the occurrence ended with an outcome nobody saw (Occurrence mode
	// only; Value is then ignored). It is unattributed: upper_bound counts it, lower_bound not.
	Unknown bool
}

// Series is the state of one series. It is kept small: millions of them may live in memory.
type Series struct {
	// Count is the running total.
	Count uint64
	// Occurrence is the latest occurrence seen.
	Occurrence int64
	// Last is the timestamp of the latest accepted point.
	Last uint64
	// Start is the StartTimestamp of the output series.
	Start uint64
	// LastSeen is when the series was last fed, in the store's coarse clock.
	LastSeen uint32
	// High tells that the flag was 1 at the latest occurrence (Occurrence mode: that occurrence
	// is accounted for, counted or part of the baseline) or at the latest point (Edge mode).
	High bool
}

// Outcome says what became of a point.
type Outcome uint8

const (
	// OutcomeAccepted: the point was applied (possibly changing nothing); emit the running total.
	OutcomeAccepted Outcome = iota
	// OutcomeOutOfOrder: the point is older than the series' latest one (or, for deltas, not
	// newer) and was dropped.
	OutcomeOutOfOrder
)

// Result is what applying a point did.
type Result struct {
	Outcome Outcome
	// Added is how much the count grew.
	Added uint64
	// Unattributed is how many occurrences a jump skipped.
	Unattributed uint64
}

// Baseline starts a series at its first point. For flags the point is history, not news: count
// 0, and an OOM it reports is never counted later. For deltas the first delta counts.
func Baseline(mode Mode, p Point) (Series, Result) {
	s := Series{Last: p.Timestamp, Start: p.Timestamp}
	switch mode {
	case ModeOccurrence:
		s.Occurrence = p.Occurrence
		// An unknown outcome at first sight is history like any other.
		s.High = p.Value == 1 || p.Unknown
		if p.Value == 1 && !p.Unknown && p.Start != 0 && p.Start < p.Timestamp {
			// The source watched the occurrence since Start and saw the flag rise after it: the
			// earlier points of the series were lost, and this one is news, not history.
			s.Count, s.Start = 1, p.Start
			return s, Result{Added: 1}
		}
	case ModeEdge:
		s.High = p.Value == 1
	case ModeDelta:
		s.Count = addCapped(0, p.Value)
		if p.Start != 0 && p.Start <= p.Timestamp {
			s.Start = p.Start
		}
		return s, Result{Added: s.Count}
	}
	return s, Result{}
}

// Apply feeds a point to an existing series.
func (s *Series) Apply(mode Mode, policy GapPolicy, p Point) Result {
	switch mode {
	case ModeOccurrence:
		return s.applyOccurrence(policy, p)
	case ModeEdge:
		return s.applyEdge(p)
	default:
		return s.applyDelta(p)
	}
}

func (s *Series) applyOccurrence(policy GapPolicy, p Point) Result {
	switch {
	case p.Timestamp < s.Last:
		return Result{Outcome: OutcomeOutOfOrder}
	case p.Timestamp == s.Last && p.Occurrence <= s.Occurrence:
		// A re-sent point, or a contradicting one at the same instant: neither is news. Only
		// forward progress of the occurrence is taken at an equal timestamp.
		if p.Occurrence < s.Occurrence {
			return Result{Outcome: OutcomeOutOfOrder}
		}
		return s.sameOccurrence(p, policy)
	}
	s.Last = p.Timestamp
	switch {
	case p.Occurrence == s.Occurrence && s.High && p.Value == 0 && !p.Unknown:
		// The flag fell back at an occurrence that was 1: the occurrence counter was reset and
		// stands at the same value again (restart count 0 before and after a node reboot). A
		// new epoch starts; nothing is counted until its occurrence is flagged.
		s.High = false
		return Result{}
	case p.Occurrence == s.Occurrence:
		return s.sameOccurrence(p, policy)
	case p.Occurrence < s.Occurrence:
		// A lower occurrence at a newer time: the occurrence counter was reset (a node reboot
		// resets restart counts). A new epoch starts; its first occurrence counts if flagged.
		return s.newOccurrence(p, 0, policy)
	default:
		return s.newOccurrence(p, uint64(p.Occurrence-s.Occurrence-1), policy)
	}
}

func (s *Series) sameOccurrence(p Point, policy GapPolicy) Result {
	if p.Unknown {
		if s.High {
			return Result{}
		}
		s.High = true
		return s.unattributed(1, policy)
	}
	if p.Value == 1 && !s.High {
		s.High = true
		s.Count++
		return Result{Added: 1}
	}
	return Result{}
}

func (s *Series) newOccurrence(p Point, skipped uint64, policy GapPolicy) Result {
	if p.Unknown {
		// The new occurrence ended unseen too: one more unattributed instance.
		skipped++
	}
	r := Result{Unattributed: skipped}
	if policy == GapPolicyUpperBound {
		r.Added += skipped
	}
	s.Occurrence = p.Occurrence
	s.High = p.Value == 1 || p.Unknown
	if p.Value == 1 && !p.Unknown {
		r.Added++
	}
	s.Count = addCapped(s.Count, r.Added)
	return r
}

// unattributed accounts for n occurrences whose outcome is unknown.
func (s *Series) unattributed(n uint64, policy GapPolicy) Result {
	r := Result{Unattributed: n}
	if policy == GapPolicyUpperBound {
		r.Added = n
		s.Count = addCapped(s.Count, n)
	}
	return r
}

func (s *Series) applyEdge(p Point) Result {
	if p.Timestamp < s.Last {
		return Result{Outcome: OutcomeOutOfOrder}
	}
	if p.Timestamp == s.Last {
		// The same instant again: a re-sent point is no edge.
		return Result{}
	}
	s.Last = p.Timestamp
	high := p.Value == 1
	var r Result
	if high && !s.High {
		s.Count++
		r.Added = 1
	}
	s.High = high
	return r
}

func (s *Series) applyDelta(p Point) Result {
	if p.Timestamp <= s.Last {
		return Result{Outcome: OutcomeOutOfOrder}
	}
	s.Last = p.Timestamp
	before := s.Count
	s.Count = addCapped(s.Count, p.Value)
	return Result{Added: s.Count - before}
}

// MaxCount is the largest count: the output is an int64 sum, and a counter that wrapped around
// would read as a reset. It is reached only by absurd input, never by real OOM kills.
const MaxCount = 1<<63 - 1

func addCapped(a, b uint64) uint64 {
	if b > MaxCount-a {
		return MaxCount
	}
	return a + b
}
