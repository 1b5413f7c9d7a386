// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package trajectory

// What a window keeps, seen from inside: thinning, and the invariants of any series of samples.

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is the time every series starts at.
var t0 = time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)

// At a steady interval shorter than MaxAge/MaxSamples, thinning keeps the window about MaxAge
// long, no two samples further apart than twice MaxAge/MaxSamples.
func TestThinningSpreadsTheSamples(t *testing.T) {
	t.Parallel()
	spread := 2 * DefaultMaxAge / DefaultMaxSamples
	for _, every := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 5 * time.Second, 9 * time.Second} {
		tr := New[string](Options{})
		for d := time.Duration(0); d < 20*time.Minute; d += every {
			tr.Add("hog", "1", Sample{Bytes: 1, At: t0.Add(d)})
			if d < 2*DefaultMaxAge {
				continue
			}
			s := tr.containers["hog"].current.samples
			require.Len(t, s, DefaultMaxSamples, "every %v", every)
			assert.GreaterOrEqual(t, s[len(s)-1].at-s[0].at, int64(DefaultMaxAge-spread), "every %v", every)
			for i := 1; i < len(s); i++ {
				require.LessOrEqual(t, s[i].at-s[i-1].at, int64(spread), "every %v", every)
			}
		}
	}
}

// A sample without a time has no place in a window.
func TestASampleWithoutATimeIsLeftOut(t *testing.T) {
	t.Parallel()
	tr := New[string](Options{})
	tr.Add("hog", "1", Sample{Bytes: 1})
	assert.Empty(t, tr.containers)
}

// Samples further apart than an int64 of nanoseconds reaches age the older out, and do not
// overflow into a negative age.
func TestSamplesCenturiesApart(t *testing.T) {
	t.Parallel()
	tr := New[string](Options{})
	old := time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.Add("hog", "1", Sample{Bytes: 1, At: old})
	tr.Add("hog", "1", Sample{Bytes: 2, At: old.AddDate(500, 0, 0)})
	assert.Equal(t, []sample{{bytes: 2, at: old.AddDate(500, 0, 0).UnixNano()}}, tr.containers["hog"].current.samples)
}

// FuzzExplain adds arbitrary series of samples of three instances of one container, with ends of
// scrapes between them, and explains a kill of each at an arbitrary time after or before the
// last sample. Each sample is 5 bytes of series: an operation (bit 0: the next instance; bit 1:
// end the scrape; bit 2: bytes as a share of limit; bit 3: negative bytes), a step of time in
// tenths of a second and a level.
func FuzzExplain(f *testing.F) {
	climb := make([]byte, 0, 5*40)
	for i := range 40 {
		climb = binary.BigEndian.AppendUint16(append(climb, 4|2), 100)
		climb = binary.BigEndian.AppendUint16(climb, uint16(20000+i*800))
	}
	f.Add(climb, int64(100<<20), uint8(0), int32(5000))
	f.Add(climb, int64(0), uint8(5), int32(-20000))
	restart := append(append([]byte{}, climb...), 1|4, 0, 100, 0, 10)
	f.Add(restart, int64(1<<30), uint8(3), int32(100))
	f.Add([]byte{4, 0, 0, 255, 255, 4, 0, 0, 0, 1, 12, 128, 0, 1, 1}, int64(-1), uint8(0), int32(0))
	f.Fuzz(func(t *testing.T, series []byte, limit int64, maxSamples uint8, killAfter int32) {
		tr := New[int](Options{MaxSamples: int(maxSamples % 48)})
		instances := [...]string{"a", "b", "c"}
		added := map[string]map[sample]bool{}
		inst, at := 0, t0
		for ; len(series) >= 5; series = series[5:] {
			op := series[0]
			if op&1 != 0 {
				inst = (inst + 1) % len(instances)
			}
			if op&2 != 0 {
				tr.EndScrape()
			}
			at = at.Add(time.Duration(int16(binary.BigEndian.Uint16(series[1:3]))) * 100 * time.Millisecond)
			level := int64(binary.BigEndian.Uint16(series[3:5]))
			bytes := level << 20
			if op&4 != 0 {
				bytes = int64(float64(limit) * float64(level) / 50000)
			}
			if op&8 != 0 {
				bytes = -bytes
			}
			name := instances[inst]
			if added[name] == nil {
				added[name] = map[sample]bool{}
			}
			added[name][sample{bytes: bytes, at: at.UnixNano()}] = true
			tr.Add(0, name, Sample{Bytes: bytes, At: at})
			if c := tr.containers[0]; c != nil {
				for _, w := range [...]window{c.current, c.ended} {
					require.LessOrEqual(t, len(w.samples), tr.maxSamples)
					require.LessOrEqual(t, cap(w.samples), tr.maxSamples)
					for i := 1; i < len(w.samples); i++ {
						require.Less(t, w.samples[i-1].at, w.samples[i].at)
					}
				}
			}
		}
		killedAt := at.Add(time.Duration(killAfter) * time.Millisecond)
		killed := killedAt.UnixNano()
		for _, name := range instances {
			got, ok := tr.Explain(0, name, limit, killedAt)
			var counted []sample
			if c := tr.containers[0]; c != nil {
				if w := c.of(name); w != nil {
					counted = w.before(killed, tr.maxAge)
				}
			}
			require.Equal(t, len(counted) > 0, ok)
			if !ok {
				require.Equal(t, Trajectory{}, got)
				continue
			}
			require.Equal(t, len(counted), got.Samples)
			require.LessOrEqual(t, got.Samples, tr.maxSamples)
			peak := counted[0].bytes
			for _, x := range counted {
				require.Less(t, x.at, killed, "a sample at or after the kill counts")
				require.LessOrEqual(t, killed-x.at, tr.maxAge)
				require.True(t, added[name][x], "a sample of another instance counts")
				peak = max(peak, x.bytes)
			}
			require.Equal(t, peak, got.Peak)
			require.GreaterOrEqual(t, got.Span, time.Duration(0))
			require.Equal(t, got.Samples >= 2, got.GrowthRateKnown)
			require.False(t, math.IsNaN(got.GrowthRate) || math.IsInf(got.GrowthRate, 0))
			if got.From80Known {
				require.GreaterOrEqual(t, got.From80, time.Duration(0))
				require.Positive(t, limit)
			}
			switch got.Class {
			case Unknown:
			case Spike:
				require.True(t, !got.From80Known || got.From80 < spikeMaxFrom80)
			case SteadyAtLimit:
				require.GreaterOrEqual(t, counted[len(counted)-1].bytes, share(limit, atLimitPercent))
				require.GreaterOrEqual(t, got.From80, spikeMaxFrom80)
			case SlowGrowth:
				require.Positive(t, got.GrowthRate)
				require.GreaterOrEqual(t, got.From80, spikeMaxFrom80)
			default:
				require.Failf(t, "not a class", "%q", got.Class)
			}
			if limit <= 0 {
				require.Equal(t, Unknown, got.Class)
				require.False(t, got.From80Known)
			}
		}
	})
}
