// Package identity names a series: a 128-bit hash of its resource, scope, output metric and
// data-point attributes. Keys are comparable and used directly as map keys; they are stable across
// process restarts, so persisted state finds its series again.
package identity

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/cespare/xxhash/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Key identifies a series. Two independent 64-bit hashes make accidental collisions between the
// series of one collector practically impossible.
type Key struct {
	Hi, Lo uint64
}

// Fixed seeds: keys must be the same in every process that reads a checkpoint.
const (
	seedHi uint64 = 0x6f6f6d7761746368 // "oomwatch"
	seedLo uint64 = 0x9e3779b97f4a7c15
)

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

// Hasher computes keys without allocating. The zero value is ready to use; it is not safe for
// concurrent use, so each goroutine keeps its own.
type Hasher struct {
	hi, lo xxhash.Digest
	buf    [8 * 6]byte
}

// Map hashes a set of attributes, leaving out the key skip (may be empty). The order of the
// attributes does not matter: each pair is hashed alone and the pair hashes are added up.
func (h *Hasher) Map(m pcommon.Map, skip string) Key {
	var sum Key
	var n uint64
	for k, v := range m.All() {
		if skip != "" && k == skip {
			continue
		}
		pair := h.pair(k, v)
		sum.Hi += pair.Hi
		sum.Lo += pair.Lo
		n++
	}
	// The count separates sets whose pair hashes happen to add up alike only with different sizes.
	sum.Hi += n * 0x9e3779b97f4a7c15
	sum.Lo += n * 0xc2b2ae3d27d4eb4f
	return sum
}

// Scope hashes an instrumentation scope: name, version and attributes.
func (h *Hasher) Scope(s pcommon.InstrumentationScope) Key {
	attrs := h.Map(s.Attributes(), "")
	h.reset()
	h.writeString(s.Name())
	h.writeByte(0)
	h.writeString(s.Version())
	h.writeKey(attrs)
	return h.sum()
}

// Metric combines what all series of one metric in one scope share: resource, scope and the
// output metric name. It runs once per metric; Series then runs once per data point.
func (h *Hasher) Metric(resource, scope Key, metric string) Key {
	h.reset()
	h.writeKey(resource)
	h.writeKey(scope)
	h.writeString(metric)
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

func (h *Hasher) pair(k string, v pcommon.Value) Key {
	h.reset()
	h.writeString(k)
	h.writeByte(0)
	h.writeValue(v)
	return h.sum()
}

func (h *Hasher) writeValue(v pcommon.Value) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		h.writeByte(tagStr)
		h.writeString(v.Str())
	case pcommon.ValueTypeInt:
		h.writeByte(tagInt)
		h.writeUint64(uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		h.writeByte(tagDouble)
		h.writeUint64(math.Float64bits(v.Double()))
	case pcommon.ValueTypeBool:
		h.writeByte(tagBool)
		if v.Bool() {
			h.writeByte(1)
		} else {
			h.writeByte(0)
		}
	case pcommon.ValueTypeBytes:
		h.writeByte(tagBytes)
		b := v.Bytes().AsRaw()
		h.writeUint64(uint64(len(b)))
		_, _ = h.hi.Write(b)
		_, _ = h.lo.Write(b)
	case pcommon.ValueTypeMap:
		// Nested values are rare in identities; hashing them through a second Hasher keeps this
		// one's running digests intact.
		var nested Hasher
		h.writeByte(tagMap)
		h.writeKey(nested.Map(v.Map(), ""))
	case pcommon.ValueTypeSlice:
		var nested Hasher
		h.writeByte(tagSlice)
		s := v.Slice()
		h.writeUint64(uint64(s.Len()))
		for i := range s.Len() {
			nested.reset()
			nested.writeValue(s.At(i))
			h.writeKey(nested.sum())
		}
	default:
		h.writeByte(tagEmpty)
	}
}

func (h *Hasher) reset() {
	h.hi.ResetWithSeed(seedHi)
	h.lo.ResetWithSeed(seedLo)
}

func (h *Hasher) sum() Key {
	return Key{Hi: h.hi.Sum64(), Lo: h.lo.Sum64()}
}

func (h *Hasher) writeString(s string) {
	_, _ = h.hi.WriteString(s)
	_, _ = h.lo.WriteString(s)
	// The length ends the string, so ("ab","c") and ("a","bc") differ.
	h.writeUint64(uint64(len(s)))
}

func (h *Hasher) writeByte(b byte) {
	h.buf[0] = b
	_, _ = h.hi.Write(h.buf[:1])
	_, _ = h.lo.Write(h.buf[:1])
}

func (h *Hasher) writeUint64(x uint64) {
	binary.LittleEndian.PutUint64(h.buf[:8], x)
	_, _ = h.hi.Write(h.buf[:8])
	_, _ = h.lo.Write(h.buf[:8])
}

func (h *Hasher) writeKey(k Key) {
	binary.LittleEndian.PutUint64(h.buf[:8], k.Hi)
	binary.LittleEndian.PutUint64(h.buf[8:16], k.Lo)
	_, _ = h.hi.Write(h.buf[:16])
	_, _ = h.lo.Write(h.buf[:16])
}
