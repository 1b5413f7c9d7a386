// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package store keeps the state of every tracked series: a fixed number of shards, each a hash
// table under its own lock, with a global bound on the number of series and expiry of stale ones.
package store

import (
	"sync"
	"sync/atomic"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

// shardCount spreads concurrent batches over independent locks. A power of two, so a key picks
// its shard with a mask.
const shardCount = 64

type shard struct {
	mu    sync.Mutex
	table table
	// Padding keeps two shards' locks off one cache line.
	_ [24]byte
}

// Store is safe for concurrent use.
type Store struct {
	shards [shardCount]shard
	size   atomic.Int64
	limit  int64
}

// New returns a store that tracks at most limit series.
func New(limit int) *Store {
	s := &Store{limit: int64(limit)}
	for i := range s.shards {
		s.shards[i].table.init(minSlots)
	}
	return s
}

// Update is what applying a point to the store did.
type Update struct {
	counting.Result
	// Tracked is false when the series is new and the store is full: nothing was recorded.
	Tracked bool
	// New tells that the point started the series.
	New bool
	// Changed tells that the point changed what persisted state must hold: the count, the start,
	// the occurrence or the flag (a new series too). A later Last timestamp alone is no change.
	Changed bool
	// Series is the state after the point.
	Series counting.Series
}

func (s *Store) shard(key identity.Key) *shard {
	return &s.shards[key.Lo&(shardCount-1)]
}

// Apply feeds p to the series key, creating the series at its baseline if it is new and there is
// room. now is the coarse clock value recorded as the series' last sighting.
func (s *Store) Apply(key identity.Key, mode counting.Mode, policy counting.GapPolicy, p counting.Point, now uint32) Update {
	key = storable(key)
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, found := sh.table.find(key)
	var u Update
	if found {
		ser := &sh.table.slots[i].series
		before := *ser
		u.Result = ser.Apply(mode, policy, p)
		u.Changed = ser.Count != before.Count || ser.Start != before.Start ||
			ser.Occurrence != before.Occurrence || ser.High != before.High
		ser.LastSeen = now
		u.Series = *ser
	} else {
		if s.size.Add(1) > s.limit {
			s.size.Add(-1)
			return Update{}
		}
		u.Series, u.Result = counting.Baseline(mode, p)
		u.Series.LastSeen = now
		u.New, u.Changed = true, true
		sh.table.insert(i, key, u.Series)
	}
	u.Tracked = true
	return u
}

// Touch starts loading into the cache the slots of the series keys, without locking and
// without waiting for each: their cache misses overlap, and the points applied next find their
// series in cache. It changes nothing; a lookup pays the misses one after the other, each
// behind the lock of its shard.
func (s *Store) Touch(keys []identity.Key) {
	for _, k := range keys {
		k = storable(k)
		s.shard(k).table.touch(k)
	}
}

// Len is the number of tracked series.
func (s *Store) Len() int {
	return int(s.size.Load())
}

// Expire forgets every series last seen before cutoff and returns how many it forgot. It locks
// one shard at a time, so batches keep flowing through the others.
func (s *Store) Expire(cutoff uint32) int {
	expired := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		expired += sh.table.expire(cutoff)
		sh.mu.Unlock()
	}
	s.size.Add(int64(-expired))
	return expired
}

// Range calls f for every series, one shard at a time, holding that shard's lock: f must not
// call back into the store.
func (s *Store) Range(f func(identity.Key, counting.Series)) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for j := range sh.table.slots {
			if sl := &sh.table.slots[j]; sl.key() != empty {
				f(sl.key(), sl.series)
			}
		}
		sh.mu.Unlock()
	}
}

// Put restores a series, as when state is loaded from storage. It reports false when the store
// is full or the series is already tracked (what was seen since start is newer and wins).
func (s *Store) Put(key identity.Key, ser counting.Series) bool {
	key = storable(key)
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, found := sh.table.find(key)
	if found {
		return false
	}
	if s.size.Add(1) > s.limit {
		s.size.Add(-1)
		return false
	}
	sh.table.insert(i, key, ser)
	return true
}
