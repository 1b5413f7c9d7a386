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

// Hasher computes keys. Each hash is one pass of XXH3-128 over bytes laid out in a scratch
// buffer, which is reused: in steady state hashing allocates nothing. A Hasher is not safe for
// concurrent use; each goroutine keeps its own.
type Hasher struct {
	scratch []byte
	initial [256]byte
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
		h.begin()
		h.appendString(k)
		h.appendValue(v)
		pair := h.sum()
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
	if h.scratch == nil {
		h.scratch = h.initial[:0]
	}
	h.scratch = h.scratch[:0]
}

func (h *Hasher) sum() Key {
	u := xxh3.Hash128(h.scratch)
	return Key{Hi: u.Hi, Lo: u.Lo}
}

// appendString writes a length prefix, so ("ab","c") and ("a","bc") differ.
func (h *Hasher) appendString(s string) {
	h.scratch = binary.LittleEndian.AppendUint32(h.scratch, uint32(len(s)))
	h.scratch = append(h.scratch, s...)
}

func (h *Hasher) appendKey(k Key) {
	h.scratch = binary.LittleEndian.AppendUint64(h.scratch, k.Hi)
	h.scratch = binary.LittleEndian.AppendUint64(h.scratch, k.Lo)
}

func (h *Hasher) appendValue(v pcommon.Value) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		h.scratch = append(h.scratch, tagStr)
		h.appendString(v.Str())
	case pcommon.ValueTypeInt:
		h.scratch = append(h.scratch, tagInt)
		h.scratch = binary.LittleEndian.AppendUint64(h.scratch, uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		h.scratch = append(h.scratch, tagDouble)
		h.scratch = binary.LittleEndian.AppendUint64(h.scratch, math.Float64bits(v.Double()))
	case pcommon.ValueTypeBool:
		b := byte(0)
		if v.Bool() {
			b = 1
		}
		h.scratch = append(h.scratch, tagBool, b)
	case pcommon.ValueTypeBytes:
		h.scratch = append(h.scratch, tagBytes)
		b := v.Bytes().AsRaw()
		h.scratch = binary.LittleEndian.AppendUint32(h.scratch, uint32(len(b)))
		h.scratch = append(h.scratch, b...)
	case pcommon.ValueTypeMap:
		// Nested values are rare in identities; a second Hasher keeps this one's buffer intact.
		var nested Hasher
		h.scratch = append(h.scratch, tagMap)
		h.appendKey(nested.Map(v.Map(), ""))
	case pcommon.ValueTypeSlice:
		var nested Hasher
		s := v.Slice()
		h.scratch = append(h.scratch, tagSlice)
		h.scratch = binary.LittleEndian.AppendUint32(h.scratch, uint32(s.Len()))
		for i := range s.Len() {
			nested.begin()
			nested.appendValue(s.At(i))
			h.appendKey(nested.sum())
		}
	default:
		h.scratch = append(h.scratch, tagEmpty)
	}
}
