// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package counting

import (
	"testing"
)

// FuzzApply feeds arbitrary point sequences to one series and checks the rule's invariants after
// every point. Each point takes four bytes: timestamp step (signed), occurrence step (signed),
// value, and a byte that repeats the previous point instead.
func FuzzApply(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 10, 0, 1, 0, 10, 3, 1, 0, 0, 0, 0, 0, 0xf6, 0xff, 1, 0})
	f.Add([]byte{1, 1, 5, 0, 0, 10, 0, 1, 0, 10, 0, 0, 0, 10, 0, 1, 0})
	f.Add([]byte{2, 0, 1, 2, 3, 0, 4, 0, 0, 1, 4, 0, 5, 0, 0xff, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		mode := Mode(data[0] % 3)
		policy := []GapPolicy{GapPolicyLowerBound, GapPolicyUpperBound}[data[1]%2]
		data = data[2:]

		var (
			s        Series
			started  bool
			prev     Point
			ts       uint64 = 1000
			occ      int64  = 10
			ones     uint64 // accepted points with value 1 (after the baseline)
			sumDelta uint64
		)
		for len(data) >= 4 {
			p := prev
			if data[3]%4 != 0 || !started {
				ts = uint64(int64(ts) + int64(int8(data[0])))
				occ += int64(int8(data[1]))
				if occ < 0 {
					occ = 0
				}
				p = Point{Timestamp: ts, Occurrence: occ, Value: uint64(data[2])}
				if data[3]&8 != 0 {
					p.Start = ts - 1
				}
				if mode != ModeDelta {
					p.Value %= 2
				}
			}
			data = data[4:]
			if !started {
				var r Result
				s, r = Baseline(mode, p)
				started = true
				if mode == ModeDelta {
					sumDelta = p.Value
					if r.Added != s.Count {
						t.Fatalf("baseline added %d, count %d", r.Added, s.Count)
					}
				} else {
					news := mode == ModeOccurrence && p.Value == 1 && p.Start != 0 && p.Start < p.Timestamp
					if want := map[bool]uint64{true: 1, false: 0}[news]; s.Count != want || r.Added != want {
						t.Fatalf("a flag baseline counted %d, news %v", s.Count, news)
					}
					ones = s.Count
				}
				prev = p
				continue
			}
			before := s
			r := s.Apply(mode, policy, p)
			switch {
			case r.Outcome == OutcomeOutOfOrder && s != before:
				t.Fatalf("a dropped point changed the state: %+v -> %+v", before, s)
			case s.Count < before.Count:
				t.Fatalf("count decreased: %d -> %d", before.Count, s.Count)
			case r.Added != s.Count-before.Count:
				t.Fatalf("added %d, count moved %d -> %d", r.Added, before.Count, s.Count)
			case s.Last < before.Last:
				t.Fatalf("last timestamp went back: %d -> %d", before.Last, s.Last)
			case s.Start != before.Start:
				t.Fatalf("start moved: %d -> %d", before.Start, s.Start)
			case r.Outcome == OutcomeOutOfOrder && p.Timestamp > before.Last:
				t.Fatalf("a newer point (%d > %d) was dropped", p.Timestamp, before.Last)
			}
			if r.Outcome == OutcomeAccepted {
				if p.Value == 1 {
					ones++
				}
				sumDelta += p.Value
			}
			switch {
			case mode == ModeDelta:
				if s.Count != min(sumDelta, MaxCount) {
					t.Fatalf("delta count %d, accepted deltas sum to %d", s.Count, sumDelta)
				}
			case mode == ModeEdge || policy == GapPolicyLowerBound:
				if s.Count > ones {
					t.Fatalf("count %d exceeds the %d accepted points with value 1", s.Count, ones)
				}
			}
			// The same point again is never news.
			again := s
			if r2 := again.Apply(mode, policy, p); r2.Outcome == OutcomeAccepted && (again.Count != s.Count || r2.Added != 0) {
				t.Fatalf("a repeated point counted: %+v then %+v", s, again)
			}
			prev = p
		}
	})
}
