// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package store

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

// TestTableAgainstMap drives the table and a Go map through the same random inserts, updates
// and expiries and compares them after every step. Home slots are drawn from a few values near
// the end of the table, so probe runs are long, collide and wrap around: the paths where removal
// without tombstones could lose a series.
func TestTableAgainstMap(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var tb table
		tb.init(minSlots)
		ref := map[identity.Key]counting.Series{}
		for step := range 2000 {
			switch op := rng.IntN(10); {
			case op < 7:
				k := identity.Key{Hi: uint64(len(tb.slots)) - 1 - rng.Uint64N(6) + rng.Uint64N(2)<<40, Lo: rng.Uint64N(200) + 1}
				ser := counting.Series{Count: rng.Uint64(), LastSeen: uint32(step)}
				i, found := tb.find(k)
				_, inRef := ref[k]
				require.Equal(t, inRef, found, "seed %d step %d: find %v", seed, step, k)
				if found {
					tb.slots[i].series = ser
				} else {
					tb.insert(i, k, ser)
				}
				ref[k] = ser
			default:
				cutoff := uint32(step - rng.IntN(300))
				want := 0
				for k, ser := range ref {
					if ser.LastSeen < cutoff {
						delete(ref, k)
						want++
					}
				}
				require.Equal(t, want, tb.expire(cutoff), "seed %d step %d: expired", seed, step)
			}
			require.Equal(t, len(ref), tb.used, "seed %d step %d", seed, step)
			for k, ser := range ref {
				i, found := tb.find(k)
				require.True(t, found, "seed %d step %d: %v lost", seed, step, k)
				require.Equal(t, ser, tb.slots[i].series)
			}
			inTable := 0
			for _, sl := range tb.slots {
				if sl.key() != empty {
					inTable++
				}
			}
			require.Equal(t, len(ref), inTable, "seed %d step %d: a series left behind", seed, step)
		}
	}
}

// TestEmptyKeyIsStored: the one key that marks a free slot still names a series.
func TestEmptyKeyIsStored(t *testing.T) {
	t.Parallel()
	s := New(10)
	s.Apply(identity.Key{}, counting.ModeDelta, counting.GapPolicyLowerBound, counting.Point{Timestamp: 1, Value: 2}, 0)
	u := s.Apply(identity.Key{}, counting.ModeDelta, counting.GapPolicyLowerBound, counting.Point{Timestamp: 2, Value: 3}, 0)
	require.Equal(t, uint64(5), u.Series.Count)
	require.False(t, s.Put(identity.Key{}, counting.Series{}), "already tracked")
	require.Equal(t, 1, s.Len())
}

// TestTableShrinksAfterExpiry: memory held for a burst of series is given back once they expire.
func TestTableShrinksAfterExpiry(t *testing.T) {
	t.Parallel()
	var tb table
	tb.init(minSlots)
	for i := range uint64(1000) {
		k := identity.Key{Hi: i * 0x9e3779b97f4a7c15, Lo: i + 1}
		j, _ := tb.find(k)
		tb.insert(j, k, counting.Series{LastSeen: uint32(i)})
	}
	require.Equal(t, 2048, len(tb.slots))
	require.Equal(t, 990, tb.expire(990))
	require.Equal(t, 32, len(tb.slots))
	require.Equal(t, 10, tb.used)
}
