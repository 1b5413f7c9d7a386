// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package store

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

func key(i int) identity.Key {
	return identity.Series(identity.Key{Hi: 1, Lo: 2}, identity.Key{Hi: uint64(i), Lo: uint64(i) * 7})
}

func flag(ts uint64, occ int64, v uint64) counting.Point {
	return counting.Point{Timestamp: ts, Occurrence: occ, Value: v}
}

func TestLimitRefusesNewSeriesOnly(t *testing.T) {
	t.Parallel()
	s := New(2)
	assert.True(t, s.Apply(key(1), counting.ModeOccurrence, counting.GapPolicyLowerBound, flag(1, 0, 0), 0).Tracked)
	assert.True(t, s.Apply(key(2), counting.ModeOccurrence, counting.GapPolicyLowerBound, flag(1, 0, 0), 0).Tracked)
	refused := s.Apply(key(3), counting.ModeOccurrence, counting.GapPolicyLowerBound, flag(1, 0, 0), 0)
	assert.False(t, refused.Tracked)
	assert.Equal(t, 2, s.Len())

	u := s.Apply(key(1), counting.ModeOccurrence, counting.GapPolicyLowerBound, flag(2, 0, 1), 0)
	assert.True(t, u.Tracked, "a tracked series keeps counting at the limit")
	assert.Equal(t, uint64(1), u.Series.Count)
}

func TestExpireForgetsOnlyStaleSeries(t *testing.T) {
	t.Parallel()
	s := New(10)
	s.Apply(key(1), counting.ModeEdge, counting.GapPolicyLowerBound, flag(1, 0, 0), 5)
	s.Apply(key(2), counting.ModeEdge, counting.GapPolicyLowerBound, flag(1, 0, 0), 9)
	assert.Equal(t, 1, s.Expire(9))
	assert.Equal(t, 1, s.Len())

	u := s.Apply(key(1), counting.ModeEdge, counting.GapPolicyLowerBound, flag(7, 0, 1), 10)
	assert.True(t, u.New, "an expired series comes back as a new one")
	assert.Equal(t, uint64(7), u.Series.Start)
	assert.Equal(t, uint64(0), u.Series.Count)
}

func TestPutRestoresWithoutOverwriting(t *testing.T) {
	t.Parallel()
	s := New(2)
	require.True(t, s.Put(key(1), counting.Series{Count: 4, Start: 1, Last: 3}))
	u := s.Apply(key(1), counting.ModeOccurrence, counting.GapPolicyLowerBound, flag(4, 1, 1), 0)
	assert.False(t, u.New)
	assert.Equal(t, uint64(5), u.Series.Count)
	assert.Equal(t, uint64(1), u.Series.Start)
	assert.False(t, s.Put(key(1), counting.Series{Count: 1}), "live state wins over stored state")
	require.True(t, s.Put(key(2), counting.Series{}))
	assert.False(t, s.Put(key(3), counting.Series{}), "the limit holds for restored state too")
}

// TestConcurrentApplyAndExpire expires series while others are fed: the expiry really forgets
// (the series last seen at clock 1 all go), never a fresh one.
func TestConcurrentApplyAndExpire(t *testing.T) {
	t.Parallel()
	s := New(1 << 20)
	const workers, perWorker, stale = 4, 2000, 3000
	for i := range stale {
		s.Apply(key(perWorker+i), counting.ModeDelta, counting.GapPolicyLowerBound, counting.Point{Timestamp: 1, Value: 1}, 1)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Every worker feeds the same series, seen at clock 10.
				s.Apply(key(i), counting.ModeDelta, counting.GapPolicyLowerBound, counting.Point{Timestamp: uint64(w*perWorker + i + 2), Value: 1}, 10)
			}
		})
	}
	wg.Go(func() {
		// Touches read without the lock while the others write and tables grow and shrink.
		keys := make([]identity.Key, perWorker+stale)
		for i := range keys {
			keys[i] = key(i)
		}
		for range 20 {
			s.Touch(keys)
		}
	})
	expired := 0
	wg.Go(func() {
		for range 50 {
			// Cutoff 2: the series seen at clock 1 are stale, those seen at 10 are not.
			expired += s.Expire(2)
			runtime.Gosched()
		}
	})
	wg.Wait()
	assert.Equal(t, stale, expired, "the stale series were not all expired")
	assert.Equal(t, perWorker, s.Len())
	s.Range(func(_ identity.Key, ser counting.Series) {
		assert.Equal(t, uint32(10), ser.LastSeen, "a stale series survived, or a fresh one lost its sighting")
	})
}

// BenchmarkBytesPerSeries reports the heap held by the store per tracked series.
func BenchmarkBytesPerSeries(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()
				s := New(n)
				for i := range n {
					s.Apply(key(i), counting.ModeOccurrence, counting.GapPolicyLowerBound, flag(1, 0, 0), 0)
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				if s.Len() != n {
					b.Fatalf("tracked %d series, want %d", s.Len(), n)
				}
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/series")
				runtime.KeepAlive(s)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkApply: batches of 1000 deltas to series already tracked, the caches flushed between
// batches as the rest of a collector's work flushes them: what a lookup costs when the state is
// not in cache, with and without touching the batch's series first.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, touch := range []bool{false, true} {
			b.Run(fmt.Sprintf("series=%d/touch=%v", n, touch), func(b *testing.B) {
				s := New(n)
				keys := make([]identity.Key, n)
				for i := range keys {
					keys[i] = key(i)
					s.Apply(keys[i], counting.ModeDelta, counting.GapPolicyLowerBound, counting.Point{Timestamp: 1, Value: 1}, 0)
				}
				flush := make([]byte, 8<<20)
				batch := make([]identity.Key, 1000)
				next, ts := 0, uint64(1)
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					for i := 0; i < len(flush); i += 64 {
						flush[i]++
					}
					for i := range batch {
						if next == 0 {
							ts++
						}
						batch[i] = keys[next]
						next = (next + 1) % n
					}
					b.StartTimer()
					if touch {
						s.Touch(batch)
					}
					for _, k := range batch {
						if u := s.Apply(k, counting.ModeDelta, counting.GapPolicyLowerBound, counting.Point{Timestamp: ts, Value: 1}, 0); !u.Tracked {
							b.Fatal("series not tracked")
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/point")
			})
		}
	}
}
