// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package store

import (
	"sync/atomic"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

// table is an open-addressing hash table with linear probing that holds each series inline in
// its slot. A Go map of the same content reaches a series through its header, directory, table
// and group, each a likely cache miss when batches arrive far apart (BenchmarkApply: more than
// twice the time of this table); here a lookup reads one array, usually one cache line of it.
// Keys are uniform hashes already: Hi picks the home slot, Lo the shard. The table holds no
// pointers, so the garbage collector never scans it. It is not safe for concurrent use.
type table struct {
	// slots has a power-of-two length.
	slots []slot
	used  int
	// view publishes slots to touch, which reads them without the lock.
	view atomic.Pointer[[]slot]
}

// slot holds a series and its key, empty when the slot is free. The key's halves sit at both ends
// of the slot, so that touch, loading them, brings in both cache lines a slot may span. touch
// loads them atomically without the lock; everything else reads them under the lock, and every
// write is atomic, under the lock.
type slot struct {
	hi     uint64
	series counting.Series
	lo     uint64
}

func (sl *slot) key() identity.Key {
	return identity.Key{Hi: sl.hi, Lo: sl.lo}
}

func (sl *slot) set(k identity.Key, ser counting.Series) {
	atomic.StoreUint64(&sl.hi, k.Hi)
	atomic.StoreUint64(&sl.lo, k.Lo)
	sl.series = ser
}

// empty marks a free slot; storable keeps it out of the table.
var empty identity.Key

// alias stands for the key that is empty, which a series gets with a chance of 2^-128: the same
// chance as any other collision of two 128-bit keys.
var alias = identity.Key{Lo: 1}

func storable(k identity.Key) identity.Key {
	if k == empty {
		return alias
	}
	return k
}

const (
	// minSlots is the size a table starts at and never shrinks below.
	minSlots = 8
	// A table doubles when more than 7/8 of its slots would be used, as Go maps do. After an
	// expiry that left fewer than 1/8 used, it shrinks to at most half used, so a burst of
	// short-lived series does not hold its memory forever.
	maxLoadNum, maxLoadDen = 7, 8
	shrinkBelowDen         = 8
)

func (t *table) init(n int) {
	slots := make([]slot, n)
	t.slots, t.used = slots, 0
	t.view.Store(&slots)
}

func (t *table) mask() uint64 {
	return uint64(len(t.slots) - 1)
}

func (t *table) home(k identity.Key) uint64 {
	return k.Hi & t.mask()
}

// find returns the slot that holds k, or, when k is absent, the free slot where it belongs.
func (t *table) find(k identity.Key) (uint64, bool) {
	mask := t.mask()
	for i := t.home(k); ; i = (i + 1) & mask {
		switch t.slots[i].key() {
		case k:
			return i, true
		case empty:
			return i, false
		}
	}
}

// insert puts k, absent, at slot i as returned by find; it grows the table first when it is
// full enough.
func (t *table) insert(i uint64, k identity.Key, ser counting.Series) {
	if (t.used+1)*maxLoadDen > len(t.slots)*maxLoadNum {
		t.resize(len(t.slots) * 2)
		i, _ = t.find(k)
	}
	t.slots[i].set(k, ser)
	t.used++
}

func (t *table) resize(n int) {
	old := t.slots
	t.init(n)
	for j := range old {
		if sl := &old[j]; sl.key() != empty {
			i, _ := t.find(sl.key())
			t.slots[i].set(sl.key(), sl.series)
			t.used++
		}
	}
}

// expire removes every series last seen before cutoff and returns how many it removed.
func (t *table) expire(cutoff uint32) int {
	removed := 0
	for i := uint64(0); i < uint64(len(t.slots)); {
		sl := &t.slots[i]
		if sl.key() != empty && sl.series.LastSeen < cutoff {
			t.remove(i)
			removed++
			// A later series of the same probe run may have moved into slot i: look again.
			continue
		}
		i++
	}
	if len(t.slots) > minSlots && t.used*shrinkBelowDen < len(t.slots) {
		n := minSlots
		for n < 2*t.used {
			n *= 2
		}
		t.resize(n)
	}
	return removed
}

// remove frees slot i without leaving a tombstone: each later series of the probe run that
// could no longer be reached from its home slot moves back into the gap. A series may move from
// the table's start to its end (the run wraps around), so a scan that removes as it goes sees
// it again, which is harmless; it never moves a series the scan has not seen before the scan's
// position.
func (t *table) remove(i uint64) {
	mask := t.mask()
	for j := (i + 1) & mask; t.slots[j].key() != empty; j = (j + 1) & mask {
		// The series at j may fill the gap at i if i lies on its path from home to j.
		if k := t.slots[j].key(); (j-t.home(k))&mask >= (j-i)&mask {
			t.slots[i].set(k, t.slots[j].series)
			i = j
		}
	}
	t.slots[i].set(empty, counting.Series{})
	t.used--
}

// touch loads the key of the home slot of k, without the lock. A table resized since only makes
// the load useless.
func (t *table) touch(k identity.Key) {
	slots := *t.view.Load()
	sl := &slots[k.Hi&uint64(len(slots)-1)]
	atomic.LoadUint64(&sl.hi)
	atomic.LoadUint64(&sl.lo)
}
