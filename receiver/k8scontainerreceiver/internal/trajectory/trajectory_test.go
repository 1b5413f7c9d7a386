// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package trajectory_test

// How the Tracker tells a trajectory from hand-built series of samples, which samples count for
// a kill, and what it keeps.

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
)

// t0 is the time every series starts at.
var t0 = time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)

// limit is the memory limit of the containers of the series.
const limit = 100 << 20

// percent returns p % of limit in bytes.
func percent(p float64) int64 {
	return int64(p * limit / 100)
}

// at returns d after t0.
func at(d time.Duration) time.Time {
	return t0.Add(d)
}

// point is a sample d after t0 at p % of limit.
type point struct {
	d time.Duration
	p float64
}

// line returns samples every step from from to to, included, at the percents of the straight
// line from pFrom to pTo.
func line(from, to, step time.Duration, pFrom, pTo float64) []point {
	var ps []point
	for d := from; d <= to; d += step {
		ps = append(ps, point{d, pFrom + (pTo-pFrom)*float64(d-from)/float64(to-from)})
	}
	return ps
}

// series joins runs of points.
func series(runs ...[]point) []point {
	var ps []point
	for _, r := range runs {
		ps = append(ps, r...)
	}
	return ps
}

// tracked returns a tracker holding the points of instance "1" of container "hog", one scrape
// each.
func tracked(ps []point) *trajectory.Tracker[string] {
	tr := trajectory.New[string](trajectory.Options{})
	for _, p := range ps {
		tr.Add("hog", "1", trajectory.Sample{Bytes: percent(p.p), At: at(p.d)})
		tr.EndScrape()
	}
	return tr
}

func TestClasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		points  []point
		killed  time.Duration
		limit   int64
		class   trajectory.Class
		from80  time.Duration // zero for unknown
		samples int
	}{
		{
			name:    "a slow climb over four minutes to the limit",
			points:  line(0, 4*time.Minute, 10*time.Second, 40, 98),
			killed:  4*time.Minute + 5*time.Second,
			limit:   limit,
			class:   trajectory.SlowGrowth,
			from80:  75 * time.Second, // first at 80 % or more: 170 s, at 81 %
			samples: 25,
		},
		{
			name:    "a jump from 30 % to the kill between two samples",
			points:  line(0, 2*time.Minute, 10*time.Second, 30, 30),
			killed:  2*time.Minute + 7*time.Second,
			limit:   limit,
			class:   trajectory.Spike,
			samples: 13,
		},
		{
			name:    "one sample at 85 % shortly before the kill",
			points:  series(line(0, 2*time.Minute, 10*time.Second, 30, 30), []point{{130 * time.Second, 85}}),
			killed:  135 * time.Second,
			limit:   limit,
			class:   trajectory.Spike,
			from80:  5 * time.Second,
			samples: 14,
		},
		{
			name:    "flat at 95 % for three minutes",
			points:  line(0, 3*time.Minute, 10*time.Second, 95, 95),
			killed:  3*time.Minute + 4*time.Second,
			limit:   limit,
			class:   trajectory.SteadyAtLimit,
			from80:  3*time.Minute + 4*time.Second,
			samples: 19,
		},
		{
			name: "a climb, then at 94 to 96 % for two and a half minutes",
			points: series(line(0, time.Minute, 10*time.Second, 30, 80),
				[]point{{70 * time.Second, 94}, {80 * time.Second, 96}, {90 * time.Second, 95}, {100 * time.Second, 94},
					{110 * time.Second, 96}, {120 * time.Second, 95}, {130 * time.Second, 94}, {140 * time.Second, 96},
					{150 * time.Second, 95}, {160 * time.Second, 94}, {170 * time.Second, 96}, {180 * time.Second, 95},
					{190 * time.Second, 94}, {200 * time.Second, 96}, {210 * time.Second, 95}, {220 * time.Second, 95}}),
			killed:  225 * time.Second,
			limit:   limit,
			class:   trajectory.SteadyAtLimit,
			from80:  165 * time.Second,
			samples: 23,
		},
		{
			name:    "at 95 % for the whole of a one-minute life",
			points:  line(0, time.Minute, 10*time.Second, 95, 95),
			killed:  65 * time.Second,
			limit:   limit,
			class:   trajectory.SteadyAtLimit,
			from80:  65 * time.Second,
			samples: 7,
		},
		{
			name:    "at 90 % or more for three minutes, but climbing by 9 %",
			points:  series(line(0, time.Minute, 10*time.Second, 40, 70), line(70*time.Second, 250*time.Second, 10*time.Second, 90, 99)),
			killed:  255 * time.Second,
			limit:   limit,
			class:   trajectory.SlowGrowth,
			from80:  185 * time.Second,
			samples: 26,
		},
		{
			name:    "at 90 % or more for one minute at the end of a climb",
			points:  series(line(0, 3*time.Minute, 10*time.Second, 50, 89), line(190*time.Second, 250*time.Second, 10*time.Second, 91, 92)),
			killed:  255 * time.Second,
			limit:   limit,
			class:   trajectory.SlowGrowth,
			from80:  115 * time.Second, // first at 80 % or more: 140 s, at 80.3 %
			samples: 26,
		},
		{
			name:    "flat at 85 %, under the limit, then killed",
			points:  line(0, 4*time.Minute, 10*time.Second, 85, 85),
			killed:  4*time.Minute + 5*time.Second,
			limit:   limit,
			class:   trajectory.Unknown,
			from80:  4*time.Minute + 5*time.Second,
			samples: 25,
		},
		{
			name:    "no limit",
			points:  line(0, 4*time.Minute, 10*time.Second, 40, 98),
			killed:  4*time.Minute + 5*time.Second,
			class:   trajectory.Unknown,
			samples: 25,
		},
		{
			name:    "one sample under 80 %",
			points:  []point{{0, 50}},
			killed:  5 * time.Second,
			limit:   limit,
			class:   trajectory.Spike,
			samples: 1,
		},
		{
			name:    "one sample at 95 %, 40 s before the kill",
			points:  []point{{0, 95}},
			killed:  40 * time.Second,
			limit:   limit,
			class:   trajectory.Unknown,
			from80:  40 * time.Second,
			samples: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tracked(tc.points).Explain("hog", "1", tc.limit, at(tc.killed))
			require.True(t, ok)
			assert.Equal(t, tc.class, got.Class)
			assert.Equal(t, tc.from80 != 0, got.From80Known)
			assert.Equal(t, tc.from80, got.From80)
			assert.Equal(t, tc.samples, got.Samples)
			peak := tc.points[0]
			for _, p := range tc.points {
				if p.p > peak.p {
					peak = p
				}
			}
			assert.Equal(t, percent(peak.p), got.Peak)
			assert.Equal(t, tc.points[len(tc.points)-1].d-tc.points[0].d, got.Span)
			assert.Equal(t, len(tc.points) >= 2, got.GrowthRateKnown)
		})
	}
}

// The growth rate is the slope of the least-squares line: one high sample moves it less than
// it would the slope from the first sample to the last.
func TestGrowthRateIsTheLeastSquaresSlope(t *testing.T) {
	t.Parallel()
	got, ok := tracked(line(0, 4*time.Minute, 10*time.Second, 40, 98)).Explain("hog", "1", limit, at(245*time.Second))
	require.True(t, ok)
	assert.InEpsilon(t, float64(percent(58))/240, got.GrowthRate, 1e-6)

	noisy := line(0, 2*time.Minute, 10*time.Second, 50, 50)
	noisy[len(noisy)-1].p = 70
	got, ok = tracked(noisy).Explain("hog", "1", limit, at(125*time.Second))
	require.True(t, ok)
	assert.Less(t, got.GrowthRate, float64(percent(20))/120/2)
	assert.Positive(t, got.GrowthRate)
}

// From80 runs from the first sample of the last run at 80 % or more: a dip under 80 % starts a
// new run, and 80 % exactly is in it.
func TestFrom80IsFromTheLastRunAt80Percent(t *testing.T) {
	t.Parallel()
	ps := series(line(0, 2*time.Minute, 10*time.Second, 85, 85), []point{{130 * time.Second, 70}}, line(140*time.Second, 200*time.Second, 10*time.Second, 85, 85))
	got, ok := tracked(ps).Explain("hog", "1", limit, at(205*time.Second))
	require.True(t, ok)
	assert.True(t, got.From80Known)
	assert.Equal(t, 65*time.Second, got.From80)

	eighty := int64(limit) * 4 / 5
	for _, tc := range []struct {
		bytes int64
		known bool
	}{{eighty, true}, {eighty - 1, false}} {
		tr := trajectory.New[string](trajectory.Options{})
		tr.Add("hog", "1", trajectory.Sample{Bytes: percent(50), At: at(0)})
		tr.Add("hog", "1", trajectory.Sample{Bytes: tc.bytes, At: at(10 * time.Second)})
		got, ok := tr.Explain("hog", "1", limit, at(40*time.Second))
		require.True(t, ok)
		assert.Equal(t, tc.known, got.From80Known, "%d bytes of %d", tc.bytes, limit)
	}
}

// The Summary goes on listing a killed instance for about a second, stamped in the second of
// the kill: samples at or after the kill's second do not count.
func TestSamplesAtOrAfterTheKillDoNotCount(t *testing.T) {
	t.Parallel()
	tr := tracked(line(0, 3*time.Minute, 10*time.Second, 95, 95))
	tr.Add("hog", "1", trajectory.Sample{Bytes: 253952, At: at(184 * time.Second)})
	tr.Add("hog", "1", trajectory.Sample{Bytes: 253952, At: at(184*time.Second + 600*time.Millisecond)})
	got, ok := tr.Explain("hog", "1", limit, at(184*time.Second))
	require.True(t, ok)
	assert.Equal(t, 19, got.Samples)
	assert.Equal(t, percent(95), got.Peak)
	assert.Equal(t, trajectory.SteadyAtLimit, got.Class)

	_, ok = tr.Explain("hog", "1", limit, at(0))
	assert.False(t, ok, "no sample before the kill")
}

// A restart starts a new window, and the ended instance's window still explains its kill,
// learned after the new instance started, also when the Summary listed the killed instance
// again; a second restart drops it.
func TestARestartKeepsTheEndedInstancesWindow(t *testing.T) {
	t.Parallel()
	tr := trajectory.New[string](trajectory.Options{})
	add := func(instance string, d time.Duration, p float64) {
		tr.Add("hog", instance, trajectory.Sample{Bytes: percent(p), At: at(d)})
	}
	for _, p := range line(0, 4*time.Minute, 10*time.Second, 40, 98) {
		add("1", p.d, p.p)
		tr.EndScrape()
	}
	for _, p := range line(250*time.Second, 300*time.Second, 10*time.Second, 20, 20) {
		add("2", p.d, p.p)
		if p.d == 250*time.Second {
			add("1", 245*time.Second+300*time.Millisecond, 0.2)
		}
		tr.EndScrape()
	}
	got, ok := tr.Explain("hog", "1", limit, at(245*time.Second))
	require.True(t, ok)
	assert.Equal(t, trajectory.SlowGrowth, got.Class)
	assert.Equal(t, 25, got.Samples)
	assert.Equal(t, percent(98), got.Peak)

	got, ok = tr.Explain("hog", "2", limit, at(305*time.Second))
	require.True(t, ok)
	assert.Equal(t, 6, got.Samples)
	assert.Equal(t, percent(20), got.Peak)
	assert.Equal(t, trajectory.Spike, got.Class)

	add("3", 310*time.Second, 20)
	_, ok = tr.Explain("hog", "1", limit, at(245*time.Second))
	assert.False(t, ok, "only the window before the current one is kept")
	_, ok = tr.Explain("hog", "2", limit, at(305*time.Second))
	assert.True(t, ok)
}

// A window holds at most MaxSamples samples, no more than MaxAge older than its newest: at a
// short interval it thins its samples and keeps its peak and its length.
func TestAWindowIsBounded(t *testing.T) {
	t.Parallel()
	tr := trajectory.New[string](trajectory.Options{})
	for d := time.Duration(0); d < 10*time.Minute; d += time.Second {
		p := 50.0
		if d == 8*time.Minute {
			p = 99
		}
		tr.Add("hog", "1", trajectory.Sample{Bytes: percent(p), At: at(d)})
		tr.EndScrape()
	}
	got, ok := tr.Explain("hog", "1", limit, at(10*time.Minute))
	require.True(t, ok)
	assert.Equal(t, trajectory.DefaultMaxSamples, got.Samples)
	assert.Greater(t, got.Span, trajectory.DefaultMaxAge-15*time.Second)
	assert.LessOrEqual(t, got.Span, trajectory.DefaultMaxAge)
	assert.Equal(t, percent(99), got.Peak)

	tr = trajectory.New[string](trajectory.Options{MaxSamples: 8, MaxAge: time.Minute})
	for d := time.Duration(0); d < 10*time.Minute; d += 10 * time.Second {
		tr.Add("hog", "1", trajectory.Sample{Bytes: percent(50), At: at(d)})
	}
	got, ok = tr.Explain("hog", "1", limit, at(10*time.Minute))
	require.True(t, ok)
	assert.Equal(t, 6, got.Samples, "no more than a minute before the kill")
	assert.Equal(t, 50*time.Second, got.Span)
}

// Repeating a reading adds nothing, and adds allocate nothing once a window has its room.
func TestAddingIsFreeOfAllocations(t *testing.T) {
	tr := trajectory.New[string](trajectory.Options{})
	d := time.Duration(0)
	add := func() {
		tr.Add("hog", "1", trajectory.Sample{Bytes: percent(50), At: at(d)})
		d += time.Second
	}
	add()
	assert.Zero(t, testing.AllocsPerRun(1000, add))
	tr.Add("hog", "1", trajectory.Sample{Bytes: percent(99), At: at(d - time.Second)})
	got, ok := tr.Explain("hog", "1", limit, at(d))
	require.True(t, ok)
	assert.Equal(t, percent(50), got.Peak, "a repeated time is left out")
}

// A window is dropped once KeepScrapes scrapes ended without sampling its instance; the window
// of an ended instance goes while the current one stays.
func TestWindowsAreDroppedAfterKeepScrapes(t *testing.T) {
	t.Parallel()
	tr := trajectory.New[string](trajectory.Options{})
	tr.Add("hog", "1", trajectory.Sample{Bytes: percent(50), At: at(0)})
	tr.Add("hog", "2", trajectory.Sample{Bytes: percent(50), At: at(10 * time.Second)})
	tr.Add("quiet", "1", trajectory.Sample{Bytes: percent(50), At: at(0)})
	tr.EndScrape()
	for i := range trajectory.DefaultKeepScrapes {
		tr.Add("hog", "2", trajectory.Sample{Bytes: percent(50), At: at(time.Duration(20+10*i) * time.Second)})
		tr.EndScrape()
	}
	_, ok := tr.Explain("quiet", "1", limit, at(time.Minute))
	assert.True(t, ok, "kept six scrapes after the Summary stopped listing it")
	_, ok = tr.Explain("hog", "1", limit, at(time.Minute))
	assert.True(t, ok)
	tr.Add("hog", "2", trajectory.Sample{Bytes: percent(50), At: at(90 * time.Second)})
	tr.EndScrape()
	_, ok = tr.Explain("quiet", "1", limit, at(time.Minute))
	assert.False(t, ok)
	_, ok = tr.Explain("hog", "1", limit, at(time.Minute))
	assert.False(t, ok)
	_, ok = tr.Explain("hog", "2", limit, at(time.Minute))
	assert.True(t, ok)
}

func TestClassString(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "slow_growth", trajectory.SlowGrowth.String())
	assert.Equal(t, "spike", trajectory.Spike.String())
	assert.Equal(t, "steady_at_limit", trajectory.SteadyAtLimit.String())
	assert.Empty(t, trajectory.Unknown.String())
}
