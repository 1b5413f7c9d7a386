// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package identity names a series: a 128-bit hash of its resource, scope, output metric and
// data-point attributes. Keys are comparable and used directly as map keys; they are stable across
// process restarts, so persisted state finds its series again.
package identity

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/zeebo/xxh3"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Key identifies a series. 128 bits make accidental collisions between the series of one
// collector practically impossible.
type Key struct {
	Hi, Lo uint64
}

// Value type tags keep "1" (string) and 1 (int) apart.
const (
	tagEmpty byte = iota
	tagStr
	tagInt
	tagDouble
	tagBool
	tagBytes
	tagMap
	tagSlice
)

// Hasher computes keys. Each hash is one pass of XXH3-128 over bytes laid out in a buffer that is
// part of the Hasher: filling it writes no pointers and allocates nothing, unless one attribute
// is larger than the buffer. A Hasher is not safe for concurrent use; each goroutine keeps its own.
type Hasher struct {
	buf [512]byte
	n   int
	// big holds the bytes instead of buf once they outgrow it.
	big []byte
	// recent holds, for each of the first keys given to Select, the latest string value hashed
	// under it and the pair's hash: the resources of one batch often share a namespace, a node,
	// a pod (one resource per container), and a value equal to the last one is not hashed again.
	recent [8]recentPair
}

type recentPair struct {
	key, value string
	sum        Key
	ok         bool
}

// Map hashes a set of attributes, leaving out the key skip (may be empty). The order of the
// attributes does not matter: each pair is hashed alone and the pair hashes are added up.
func (h *Hasher) Map(m pcommon.Map, skip string) Key {
	var set pairSet
	for k, v := range m.All() {
		if skip != "" && k == skip {
			continue
		}
		set.add(h.pair(k, v))
	}
	return set.key()
}

// Select hashes the attributes of m named in keys, as Map would hash m holding only those: an
// absent key is left out. Other attributes of m do not change the key. keys must hold no
// duplicates.
func (h *Hasher) Select(m pcommon.Map, keys []string) Key {
	var set pairSet
	for i, k := range keys {
		v, ok := m.Get(k)
		switch {
		case !ok:
		case i < len(h.recent) && v.Type() == pcommon.ValueTypeStr:
			r := &h.recent[i]
			if s := v.Str(); !r.ok || s != r.value || k != r.key {
				*r = recentPair{key: k, value: s, sum: h.pair(k, v), ok: true}
			}
			set.add(r.sum)
		default:
			set.add(h.pair(k, v))
		}
	}
	return set.key()
}

// pairSet adds up the hashes of attribute pairs, so their order does not matter.
type pairSet struct {
	sum Key
	n   uint64
}

func (s *pairSet) add(pair Key) {
	s.sum.Hi += pair.Hi
	s.sum.Lo += pair.Lo
	s.n++
}

// key also mixes in the count, which separates sets whose pair hashes happen to add up alike
// only with different sizes.
func (s *pairSet) key() Key {
	return Key{Hi: s.sum.Hi + s.n*0x9e3779b97f4a7c15, Lo: s.sum.Lo + s.n*0xc2b2ae3d27d4eb4f}
}

func (h *Hasher) pair(k string, v pcommon.Value) Key {
	h.begin()
	h.appendString(k)
	h.appendValue(v)
	return h.sum()
}

// Scope hashes an instrumentation scope: name, version and attributes.
func (h *Hasher) Scope(s pcommon.InstrumentationScope) Key {
	attrs := h.Map(s.Attributes(), "")
	h.begin()
	h.appendString(s.Name())
	h.appendString(s.Version())
	h.appendKey(attrs)
	return h.sum()
}

// Metric combines what all series of one metric in one scope share: resource, scope and the
// output metric name. It runs once per metric; Series then runs once per data point.
func (h *Hasher) Metric(resource, scope Key, metric string) Key {
	h.begin()
	h.appendKey(resource)
	h.appendKey(scope)
	h.appendString(metric)
	return h.sum()
}

// Series combines a metric key with the hash of a data point's attributes. Both inputs are
// already well-mixed hashes, so a finalizer suffices on the per-point path.
func Series(metric, attrs Key) Key {
	return Key{
		Hi: fmix64(metric.Hi ^ bits.RotateLeft64(attrs.Hi, 31) ^ attrs.Lo*0x9e3779b97f4a7c15),
		Lo: fmix64(metric.Lo ^ bits.RotateLeft64(attrs.Lo, 27) ^ attrs.Hi*0xc2b2ae3d27d4eb4f),
	}
}

// fmix64 is the 64-bit finalizer of MurmurHash3: every input bit affects every output bit.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (h *Hasher) begin() {
	h.n = 0
	h.big = h.big[:0]
}

func (h *Hasher) sum() Key {
	var u xxh3.Uint128
	if len(h.big) > 0 {
		u = xxh3.Hash128(h.big)
	} else {
		u = xxh3.Hash128(h.buf[:h.n])
	}
	return Key{Hi: u.Hi, Lo: u.Lo}
}

func (h *Hasher) write(s string) {
	if len(h.big) == 0 && len(s) <= len(h.buf)-h.n {
		h.n += copy(h.buf[h.n:], s)
		return
	}
	h.spill()
	h.big = append(h.big, s...)
}

// writeUint64 and writeTag write into the buffer directly: passing their bytes to write as a
// string would copy them once more, at each of the several calls per attribute.
func (h *Hasher) writeUint64(x uint64) {
	if len(h.big) == 0 && 8 <= len(h.buf)-h.n {
		binary.LittleEndian.PutUint64(h.buf[h.n:], x)
		h.n += 8
		return
	}
	h.spill()
	h.big = binary.LittleEndian.AppendUint64(h.big, x)
}

func (h *Hasher) writeTag(tag byte) {
	if len(h.big) == 0 && h.n < len(h.buf) {
		h.buf[h.n] = tag
		h.n++
		return
	}
	h.spill()
	h.big = append(h.big, tag)
}

// spill moves the bytes written so far to big, once they outgrow buf.
func (h *Hasher) spill() {
	if len(h.big) == 0 {
		h.big = append(h.big, h.buf[:h.n]...)
	}
}

// appendString writes a length prefix, so ("ab","c") and ("a","bc") differ.
func (h *Hasher) appendString(s string) {
	h.writeUint64(uint64(len(s)))
	h.write(s)
}

func (h *Hasher) appendKey(k Key) {
	h.writeUint64(k.Hi)
	h.writeUint64(k.Lo)
}

func (h *Hasher) appendValue(v pcommon.Value) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		h.writeTag(tagStr)
		h.appendString(v.Str())
	case pcommon.ValueTypeInt:
		h.writeTag(tagInt)
		h.writeUint64(uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		h.writeTag(tagDouble)
		h.writeUint64(math.Float64bits(v.Double()))
	case pcommon.ValueTypeBool:
		h.writeTag(tagBool)
		if v.Bool() {
			h.writeTag(1)
		} else {
			h.writeTag(0)
		}
	case pcommon.ValueTypeBytes:
		h.writeTag(tagBytes)
		h.appendString(string(v.Bytes().AsRaw()))
	case pcommon.ValueTypeMap:
		// Nested values are rare in identities; a second Hasher keeps this one's buffer intact.
		var nested Hasher
		h.writeTag(tagMap)
		h.appendKey(nested.Map(v.Map(), ""))
	case pcommon.ValueTypeSlice:
		var nested Hasher
		s := v.Slice()
		h.writeTag(tagSlice)
		h.writeUint64(uint64(s.Len()))
		for i := range s.Len() {
			nested.begin()
			nested.appendValue(s.At(i))
			h.appendKey(nested.sum())
		}
	default:
		h.writeTag(tagEmpty)
	}
}
