// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package checkpoint encodes the state of all series into one blob for a storage extension, and
// decodes it back. The format is versioned, tied to the counting configuration and checksummed:
// a blob written under another configuration, truncated or damaged is refused as a whole, never
// half-applied.
package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

const (
	magic   = "OOMC"
	version = 1
	// header: magic, version (2), fingerprint (8), entry count (8).
	headerSize = len(magic) + 2 + 8 + 8
	// entry: key (16), count, occurrence, last, start (8 each), high (1).
	entrySize   = 16 + 4*8 + 1
	trailerSize = 4 // CRC-32 (Castagnoli) of everything before it
)

// Entry is one series as stored. The last-seen time is not stored: a restored series counts as
// seen at restore time, so it gets a full max_stale to show up again.
type Entry struct {
	Key    identity.Key
	Series counting.Series
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encoder writes entries into a reusable buffer.
type Encoder struct {
	buf []byte
}

// Begin starts a blob for the configuration fingerprint and the expected number of entries (a
// capacity hint only).
func (e *Encoder) Begin(fingerprint uint64, hint int) {
	need := headerSize + hint*entrySize + trailerSize
	if cap(e.buf) < need {
		e.buf = make([]byte, 0, need)
	}
	e.buf = e.buf[:headerSize]
	copy(e.buf, magic)
	binary.LittleEndian.PutUint16(e.buf[4:], version)
	binary.LittleEndian.PutUint64(e.buf[6:], fingerprint)
}

// Add appends one series.
func (e *Encoder) Add(k identity.Key, s counting.Series) {
	e.buf = binary.LittleEndian.AppendUint64(e.buf, k.Hi)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, k.Lo)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, s.Count)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(s.Occurrence))
	e.buf = binary.LittleEndian.AppendUint64(e.buf, s.Last)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, s.Start)
	var high byte
	if s.High {
		high = 1
	}
	e.buf = append(e.buf, high)
}

// Finish seals the blob and returns it. The slice is valid until the next Begin.
func (e *Encoder) Finish() []byte {
	n := (len(e.buf) - headerSize) / entrySize
	binary.LittleEndian.PutUint64(e.buf[14:], uint64(n))
	return binary.LittleEndian.AppendUint32(e.buf, crc32.Checksum(e.buf, castagnoli))
}

// ErrFingerprint tells that the blob was written under another counting configuration.
var ErrFingerprint = errors.New("state was saved under a different counters configuration")

// Decode checks a blob and calls f for each entry. Nothing is passed to f unless the whole blob
// is intact and belongs to the fingerprint.
func Decode(blob []byte, fingerprint uint64, f func(Entry)) error {
	if len(blob) < headerSize+trailerSize {
		return fmt.Errorf("state too short: %d bytes", len(blob))
	}
	if string(blob[:4]) != magic {
		return errors.New("state has no checkpoint header")
	}
	if v := binary.LittleEndian.Uint16(blob[4:]); v != version {
		return fmt.Errorf("state format version %d, this build reads %d", v, version)
	}
	body, trailer := blob[:len(blob)-trailerSize], blob[len(blob)-trailerSize:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(trailer) {
		return errors.New("state checksum mismatch")
	}
	if binary.LittleEndian.Uint64(blob[6:]) != fingerprint {
		return ErrFingerprint
	}
	n := binary.LittleEndian.Uint64(blob[14:])
	entries := body[headerSize:]
	if len(entries)%entrySize != 0 || uint64(len(entries)/entrySize) != n {
		return fmt.Errorf("state holds %d bytes of entries, header says %d entries", len(entries), n)
	}
	for len(entries) > 0 {
		e := entries[:entrySize]
		f(Entry{
			Key: identity.Key{Hi: binary.LittleEndian.Uint64(e[0:]), Lo: binary.LittleEndian.Uint64(e[8:])},
			Series: counting.Series{
				Count:      binary.LittleEndian.Uint64(e[16:]),
				Occurrence: int64(binary.LittleEndian.Uint64(e[24:])),
				Last:       binary.LittleEndian.Uint64(e[32:]),
				Start:      binary.LittleEndian.Uint64(e[40:]),
				High:       e[48] == 1,
			},
		})
		entries = entries[entrySize:]
	}
	return nil
}
