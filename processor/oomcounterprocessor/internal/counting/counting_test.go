// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package counting

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

type step struct {
	ts, occ, v uint64
	want       uint64 // count after the step
	outcome    Outcome
	unattrib   uint64
}

func run(t *testing.T, mode Mode, policy GapPolicy, steps []step) {
	t.Helper()
	p := func(s step) Point {
		return Point{Timestamp: s.ts, Start: s.ts, Occurrence: int64(s.occ), Value: s.v}
	}
	s, r := Baseline(mode, p(steps[0]))
	assert.Equal(t, steps[0].want, s.Count, "baseline")
	assert.Equal(t, steps[0].want, r.Added, "baseline added")
	for i, st := range steps[1:] {
		before := s.Count
		r := s.Apply(mode, policy, p(st))
		assert.Equal(t, st.outcome, r.Outcome, "step %d outcome", i+1)
		assert.Equal(t, st.want, s.Count, "step %d count", i+1)
		assert.Equal(t, st.want-before, r.Added, "step %d added", i+1)
		assert.Equal(t, st.unattrib, r.Unattributed, "step %d unattributed", i+1)
	}
}

func TestOccurrence(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		policy GapPolicy
		steps  []step
	}{
		"historical OOM is the baseline, not news": {steps: []step{
			{ts: 1, occ: 2, v: 1, want: 0},
			{ts: 2, occ: 2, v: 1, want: 0},
			{ts: 3, occ: 3, v: 0, want: 0},
		}},
		"sticky across non-OOM samples": {steps: []step{
			{ts: 1, occ: 0, v: 0, want: 0},
			{ts: 2, occ: 0, v: 1, want: 1},
			{ts: 3, occ: 0, v: 1, want: 1},
			{ts: 4, occ: 1, v: 0, want: 1},
			{ts: 5, occ: 1, v: 0, want: 1},
			{ts: 6, occ: 1, v: 1, want: 2},
		}},
		"a flag that falls back at the same occurrence is a new epoch (reset from 0 to 0)": {steps: []step{
			{ts: 1, occ: 0, v: 0, want: 0},
			{ts: 2, occ: 0, v: 1, want: 1},
			{ts: 3, occ: 0, v: 0, want: 1},
			{ts: 3, occ: 0, v: 0, want: 1},
			{ts: 4, occ: 0, v: 0, want: 1},
			{ts: 5, occ: 0, v: 1, want: 2},
			{ts: 6, occ: 0, v: 1, want: 2},
		}},
		"duplicate and older points": {steps: []step{
			{ts: 1, occ: 0, v: 0, want: 0},
			{ts: 5, occ: 1, v: 1, want: 1},
			{ts: 5, occ: 1, v: 1, want: 1},
			{ts: 4, occ: 2, v: 1, want: 1, outcome: OutcomeOutOfOrder},
			{ts: 5, occ: 0, v: 1, want: 1, outcome: OutcomeOutOfOrder},
			{ts: 5, occ: 2, v: 1, want: 2},
		}},
		"jump by 3, lower bound": {policy: GapPolicyLowerBound, steps: []step{
			{ts: 1, occ: 0, v: 1, want: 0},
			{ts: 2, occ: 3, v: 1, want: 1, unattrib: 2},
		}},
		"jump by 3, upper bound": {policy: GapPolicyUpperBound, steps: []step{
			{ts: 1, occ: 0, v: 1, want: 0},
			{ts: 2, occ: 3, v: 1, want: 3, unattrib: 2},
		}},
		"reset to a lower occurrence is a new epoch": {steps: []step{
			{ts: 1, occ: 4, v: 1, want: 0},
			{ts: 2, occ: 0, v: 1, want: 1},
			{ts: 3, occ: 1, v: 0, want: 1},
			{ts: 4, occ: 0, v: 0, want: 1},
		}},
		"upper bound saturates instead of wrapping": {policy: GapPolicyUpperBound, steps: []step{
			{ts: 1, occ: 0, v: 0, want: 0},
			{ts: 2, occ: MaxCount, v: 1, want: MaxCount, unattrib: MaxCount - 1},
			{ts: 3, occ: MaxCount, v: 1, want: MaxCount},
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, ModeOccurrence, tc.policy, tc.steps)
		})
	}
}

func TestEdge(t *testing.T) {
	t.Parallel()
	run(t, ModeEdge, GapPolicyLowerBound, []step{
		{ts: 1, v: 1, want: 0},
		{ts: 2, v: 1, want: 0},
		{ts: 3, v: 0, want: 0},
		{ts: 4, v: 1, want: 1},
		{ts: 4, v: 1, want: 1},
		{ts: 3, v: 0, want: 1, outcome: OutcomeOutOfOrder},
		{ts: 5, v: 1, want: 1},
		{ts: 6, v: 0, want: 1},
		{ts: 7, v: 1, want: 2},
	})
}

func TestDelta(t *testing.T) {
	t.Parallel()
	run(t, ModeDelta, GapPolicyLowerBound, []step{
		{ts: 1, v: 2, want: 2},
		{ts: 2, v: 0, want: 2},
		{ts: 3, v: 5, want: 7},
		{ts: 3, v: 5, want: 7, outcome: OutcomeOutOfOrder},
		{ts: 2, v: 5, want: 7, outcome: OutcomeOutOfOrder},
		{ts: 4, v: MaxCount, want: MaxCount},
	})
}

func TestDeltaBaselineStart(t *testing.T) {
	t.Parallel()
	s, _ := Baseline(ModeDelta, Point{Timestamp: 10, Start: 7, Value: 1})
	assert.Equal(t, uint64(7), s.Start)
	s, _ = Baseline(ModeDelta, Point{Timestamp: 10, Value: 1})
	assert.Equal(t, uint64(10), s.Start, "no start: the point's time")
	s, _ = Baseline(ModeDelta, Point{Timestamp: 10, Start: 11, Value: 1})
	assert.Equal(t, uint64(10), s.Start, "a start after the point is not believed")
}

func TestUnknownOutcome(t *testing.T) {
	t.Parallel()
	// Instance 2 seen running, then instances 2 and 3 reported ended unseen, then instance 4
	// OOM-killed: lower_bound counts 1, upper_bound 3, and the two unknown instances are
	// unattributed either way. Re-sent unknown points change nothing.
	steps := []struct {
		ts      uint64
		occ     int64
		value   uint64
		unknown bool
	}{{1, 2, 0, false}, {2, 2, 0, true}, {3, 3, 0, true}, {3, 3, 0, true}, {4, 4, 1, false}}
	for _, tt := range []struct {
		policy             GapPolicy
		count, unattribute uint64
	}{{GapPolicyLowerBound, 1, 2}, {GapPolicyUpperBound, 3, 2}} {
		s, _ := Baseline(ModeOccurrence, Point{Timestamp: 1, Occurrence: 2})
		var unattributed uint64
		for _, st := range steps[1:] {
			r := s.Apply(ModeOccurrence, tt.policy, Point{Timestamp: st.ts, Occurrence: st.occ, Value: st.value, Unknown: st.unknown})
			unattributed += r.Unattributed
		}
		assert.Equal(t, tt.count, s.Count, "policy %s", tt.policy)
		assert.Equal(t, tt.unattribute, unattributed, "policy %s", tt.policy)
	}

	// An unknown outcome at first sight is history.
	s, r := Baseline(ModeOccurrence, Point{Timestamp: 1, Occurrence: 5, Unknown: true})
	assert.Equal(t, Result{}, r)
	r = s.Apply(ModeOccurrence, GapPolicyUpperBound, Point{Timestamp: 2, Occurrence: 5, Unknown: true})
	assert.Equal(t, Result{}, r)
	assert.Zero(t, s.Count)
}
