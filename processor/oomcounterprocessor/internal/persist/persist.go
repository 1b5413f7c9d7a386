// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package persist keeps the counter state durable in a storage extension: a snapshot of every
// series, written now and then, plus a journal of the series that changed since, written before
// the change leaves the processor.
//
// Layout under the processor's storage client (which has no key listing, so every key is
// reachable from a fixed one):
//
//	state                      snapshot: every series (internal/checkpoint format)
//	journal/head               the generation of the snapshot and the length of its journal
//	journal/<generation>/<n>   segment n (1-based) of that generation: the series one batch changed
//
// A segment and the head that counts it are written in one Batch; a snapshot, the head of its
// new generation (length 0) and the deletion of the old segments too. Restore reads the
// snapshot, then the segments in order. Batches run concurrently and may write their segments in
// another order than they applied their points, so for one series the entry with the later Last
// timestamp (then the greater count) wins, whichever segment holds it.
package persist

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/checkpoint"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

const (
	// StateKey holds the snapshot.
	StateKey = "state"
	// HeadKey holds the journal head.
	HeadKey = "journal/head"

	headMagic   = "OOMJ"
	headVersion = 1
	// head: magic, version (2), generation (8), length (8), CRC-32C (4).
	headSize = len(headMagic) + 2 + 8 + 8 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SegmentKey names segment n of a generation.
func SegmentKey(generation, n uint64) string {
	return "journal/" + strconv.FormatUint(generation, 10) + "/" + strconv.FormatUint(n, 10)
}

// Range calls f for every tracked series (store.Store.Range).
type Range func(f func(identity.Key, counting.Series))

// Journal writes snapshots and segments. It is safe for concurrent use.
type Journal struct {
	client      storage.Client
	fingerprint uint64
	all         Range

	// mu orders segment writes and snapshots. A snapshot holds it from the first series it reads
	// to its write, so a segment is either written before the snapshot began (its changes were
	// applied before, the snapshot holds them, the segment may go) or after it (it belongs to the
	// new generation): no change is dropped with the old journal without being in the snapshot.
	mu         sync.Mutex
	generation uint64
	length     uint64
	// dirty: a segment could not be written, so some change that was applied is in no durable
	// record. Until a snapshot succeeds, every write is a snapshot.
	dirty atomic.Bool
}

// New returns a journal over client for state of the counting configuration fingerprint; all
// reads the live state when a snapshot is taken.
func New(client storage.Client, fingerprint uint64, all Range) *Journal {
	return &Journal{client: client, fingerprint: fingerprint, all: all}
}

// Dirty tells that a change is not durable yet: the next Append must write, even with nothing
// new to write.
func (j *Journal) Dirty() bool { return j.dirty.Load() }

// Restored is what Restore found.
type Restored struct {
	// Snapshot is the number of series in the snapshot, Segments the number of segments replayed.
	Snapshot, Segments int
	// Problems are the parts of the saved state that were discarded, and why.
	Problems []error
}

// Restore reads the saved state and calls put once per series, with the latest state saved for
// it. A damaged or foreign snapshot is discarded; a damaged or missing segment is discarded with
// every segment after it (those may depend on it only through ordering, but a journal with a
// hole is not one to trust further). Each discarded part is reported in Problems, never fatal.
// The next write is a snapshot of what was restored (see Compact).
func (j *Journal) Restore(ctx context.Context, put func(checkpoint.Entry)) Restored {
	j.mu.Lock()
	defer j.mu.Unlock()
	var r Restored
	merged := map[identity.Key]counting.Series{}
	merge := func(e checkpoint.Entry) {
		if old, ok := merged[e.Key]; !ok || newer(e.Series, old) {
			merged[e.Key] = e.Series
		}
	}

	headKnown := true
	switch raw, err := j.client.Get(ctx, HeadKey); {
	case err != nil:
		headKnown = false
		r.Problems = append(r.Problems, fmt.Errorf("reading the journal head: %w", err))
	case raw != nil:
		h, err := decodeHead(raw)
		if err != nil {
			headKnown = false
			r.Problems = append(r.Problems, fmt.Errorf("journal head: %w", err))
			break
		}
		j.generation, j.length = h.generation, h.length
	}

	switch blob, err := j.client.Get(ctx, StateKey); {
	case err != nil:
		r.Problems = append(r.Problems, fmt.Errorf("reading the snapshot: %w", err))
	case blob != nil:
		// Decode passes nothing on from a blob that is not intact.
		if err := checkpoint.Decode(blob, j.fingerprint, func(e checkpoint.Entry) { merge(e); r.Snapshot++ }); err != nil {
			r.Problems = append(r.Problems, fmt.Errorf("snapshot: %w", err))
		}
	}

	if headKnown {
		for n := uint64(1); n <= j.length; n++ {
			blob, err := j.client.Get(ctx, SegmentKey(j.generation, n))
			if err == nil && blob == nil {
				err = errors.New("missing")
			}
			if err == nil {
				err = checkpoint.Decode(blob, j.fingerprint, merge)
			}
			if err != nil {
				r.Problems = append(r.Problems, fmt.Errorf("journal segment %d of %d: %w; it and the %d after it are discarded", n, j.length, err, j.length-n))
				break
			}
			r.Segments++
		}
	} else {
		// Old segments cannot be found without the head; a fresh generation keeps new ones
		// from ever being confused with them.
		j.generation, j.length = uint64(time.Now().UnixNano()), 0
	}
	for k, s := range merged {
		put(checkpoint.Entry{Key: k, Series: s})
	}
	// Until the restored state is in a snapshot of a new generation, new segments must not
	// follow a journal that was cut short.
	if len(r.Problems) > 0 {
		j.dirty.Store(true)
	}
	return r
}

// newer tells whether a is a later state of a series than b.
func newer(a, b counting.Series) bool {
	if a.Last != b.Last {
		return a.Last > b.Last
	}
	if a.Count != b.Count {
		return a.Count > b.Count
	}
	return a.Occurrence > b.Occurrence
}

// Append makes the changes of one batch durable: segment is a sealed checkpoint blob
// (checkpoint.Encoder) of the series the batch changed, or nil when it changed none. It is
// written as the next segment, or as part of a full snapshot if an earlier write failed. When
// Append returns nil, the batch's changes survive a crash.
func (j *Journal) Append(ctx context.Context, segment []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.dirty.Load() {
		return j.snapshotLocked(ctx)
	}
	if segment == nil {
		return nil
	}
	n := j.length + 1
	err := j.client.Batch(ctx,
		storage.SetOperation(SegmentKey(j.generation, n), segment),
		storage.SetOperation(HeadKey, encodeHead(head{generation: j.generation, length: n})),
	)
	if err != nil {
		j.dirty.Store(true)
		return fmt.Errorf("writing journal segment %d: %w", n, err)
	}
	j.length = n
	return nil
}

// Snapshot writes every series as a new snapshot and drops the journal.
func (j *Journal) Snapshot(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.snapshotLocked(ctx)
}

func (j *Journal) snapshotLocked(ctx context.Context) error {
	// A fresh buffer each time: a storage client may keep the slice it was given.
	var enc checkpoint.Encoder
	enc.Begin(j.fingerprint, 0)
	j.all(enc.Add)
	ops := make([]*storage.Operation, 0, 2+j.length)
	next := j.generation + 1
	ops = append(ops,
		storage.SetOperation(StateKey, enc.Finish()),
		storage.SetOperation(HeadKey, encodeHead(head{generation: next})),
	)
	for n := uint64(1); n <= j.length; n++ {
		ops = append(ops, storage.DeleteOperation(SegmentKey(j.generation, n)))
	}
	if err := j.client.Batch(ctx, ops...); err != nil {
		// The old snapshot and journal are still what storage holds, and still complete unless
		// a segment write failed before (dirty stays as it was).
		return fmt.Errorf("writing the snapshot: %w", err)
	}
	j.generation, j.length = next, 0
	j.dirty.Store(false)
	return nil
}

type head struct {
	generation, length uint64
}

func encodeHead(h head) []byte {
	b := make([]byte, 0, headSize)
	b = append(b, headMagic...)
	b = binary.LittleEndian.AppendUint16(b, headVersion)
	b = binary.LittleEndian.AppendUint64(b, h.generation)
	b = binary.LittleEndian.AppendUint64(b, h.length)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeHead(b []byte) (head, error) {
	if len(b) != headSize || string(b[:4]) != headMagic {
		return head{}, errors.New("not a journal head")
	}
	if crc32.Checksum(b[:headSize-4], castagnoli) != binary.LittleEndian.Uint32(b[headSize-4:]) {
		return head{}, errors.New("journal head checksum mismatch")
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != headVersion {
		return head{}, fmt.Errorf("journal head version %d, this build reads %d", v, headVersion)
	}
	return head{generation: binary.LittleEndian.Uint64(b[6:]), length: binary.LittleEndian.Uint64(b[14:])}, nil
}
