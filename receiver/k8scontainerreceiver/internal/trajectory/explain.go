// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package trajectory

import "time"

// Class is how a container's memory came to its kill, the attribute k8s.oom.growth_class.
type Class string

const (
	// Unknown is the class of a trajectory the samples cannot tell: no limit, or a memory that
	// neither climbed nor lived at the limit in the window. Records leave the attribute out.
	Unknown Class = ""
	// SlowGrowth is a memory that climbed to the limit across samples.
	SlowGrowth Class = "slow_growth"
	// Spike is a memory that rose to the limit faster than the samples could follow.
	Spike Class = "spike"
	// SteadyAtLimit is a memory that lived at its limit until one more allocation.
	SteadyAtLimit Class = "steady_at_limit"
)

func (c Class) String() string {
	return string(c)
}

const (
	// nearLimitPercent is the share of the limit From80 starts at. A fifth of the limit takes a
	// climb of 2 % of the limit per second a whole default scrape interval (10 s) to cross, so a
	// climb slower than that shows above it in a sample before the kill; a faster one is a spike.
	nearLimitPercent = 80
	// atLimitPercent is the share of the limit from which a container lives at it. The kernel
	// holds a container at its limit by reclaiming page cache, and the working set, which leaves
	// out only the inactive part of it, reads a few percent under the limit there; a tenth covers
	// that without taking in containers that merely run high.
	atLimitPercent = 90
	// spikeMaxFrom80 is the shortest time from 80 % of the limit to the kill that is not a spike:
	// three default scrape intervals. A faster climb shows in two samples above 80 % at most,
	// too few for a trend: the memory rose faster than the samples could follow.
	spikeMaxFrom80 = 30 * time.Second
	// steadyMinRun is how long the samples must stay at atLimitPercent or more for the memory to
	// live at its limit, unless they did for the whole window: twelve default scrape intervals,
	// long enough to tell a life at the limit from the top of a climb, short enough to fit in
	// DefaultMaxAge with the climb before it.
	steadyMinRun = 2 * time.Minute
	// flatGrowthPercent is the largest rise, as a share of the limit, of the line fitted to a
	// run of samples that is flat: the working set of a steady process moves by a few percent
	// with its page cache and garbage collection. A life at the limit rises less over its run;
	// a slow growth rises more over the window.
	flatGrowthPercent = 5
)

// Trajectory is how a container's working set came to its kill, from the samples of its
// window taken before the kill.
type Trajectory struct {
	// Peak is the highest working set of the samples, in bytes.
	Peak int64
	// GrowthRate is the slope, in bytes per second, of the least-squares line through the
	// samples, which no single noisy sample dominates. It is known from 2 samples on.
	GrowthRate      float64
	GrowthRateKnown bool
	// From80 is the time to the kill from the first sample of the last run of samples at 80 %
	// of the limit or more, the run that lasts to the last sample: a dip under 80 % starts it
	// anew. It is unknown without a limit, or if the last sample was under 80 %: the memory
	// reached 80 % between the last sample and the kill.
	From80      time.Duration
	From80Known bool
	Class       Class
	// Samples is how many samples the trajectory comes from, Span the time from the first to
	// the last, Last the time of the last.
	Samples int
	Span    time.Duration
	Last    time.Time
}

// Explain returns the trajectory of container k's instance named instance, killed at killedAt
// (which a pod status gives to the second) with a memory limit of limit bytes (0 if unknown).
// It comes from the samples taken before the second of the kill, no more than MaxAge earlier:
// the Summary goes on listing a killed instance for about a second with what is left of it,
// stamped in the second of the kill. Explain reports false without such samples.
func (t *Tracker[K]) Explain(k K, instance string, limit int64, killedAt time.Time) (Trajectory, bool) {
	c := t.containers[k]
	if c == nil {
		return Trajectory{}, false
	}
	w := c.of(instance)
	if w == nil {
		return Trajectory{}, false
	}
	killed := killedAt.UnixNano()
	s := w.before(killed, t.maxAge)
	if len(s) == 0 {
		return Trajectory{}, false
	}
	return explain(s, limit, killed), true
}

// explain returns the trajectory of samples s, at least one, to a kill at killed.
func explain(s []sample, limit, killed int64) Trajectory {
	tr := Trajectory{
		Samples: len(s),
		Span:    time.Duration(elapsed(s[0].at, s[len(s)-1].at)),
		Last:    time.Unix(0, s[len(s)-1].at),
		Peak:    s[0].bytes,
	}
	for _, x := range s {
		tr.Peak = max(tr.Peak, x.bytes)
	}
	tr.GrowthRate, tr.GrowthRateKnown = slope(s)
	if limit <= 0 {
		return tr
	}
	if near := runStart(s, share(limit, nearLimitPercent)); near < len(s) {
		tr.From80, tr.From80Known = time.Duration(elapsed(s[near].at, killed)), true
	}
	switch {
	case !tr.From80Known || tr.From80 < spikeMaxFrom80:
		tr.Class = Spike
	case livedAtLimit(s, limit):
		tr.Class = SteadyAtLimit
	case tr.GrowthRateKnown && tr.GrowthRate*tr.Span.Seconds() >= flat(limit):
		tr.Class = SlowGrowth
	}
	return tr
}

// livedAtLimit reports whether the samples s stayed at atLimitPercent of limit or more for
// steadyMinRun, or the whole window, to the last, with a rise under flatGrowthPercent.
func livedAtLimit(s []sample, limit int64) bool {
	start := runStart(s, share(limit, atLimitPercent))
	run := s[start:]
	if len(run) < 2 {
		return false
	}
	lasted := time.Duration(elapsed(run[0].at, run[len(run)-1].at))
	if start > 0 && lasted < steadyMinRun {
		return false
	}
	rate, ok := slope(run)
	return ok && rate*lasted.Seconds() < flat(limit)
}

// runStart returns the index of the first sample of the run of samples of threshold bytes or
// more that lasts to the last sample, len(s) if the last is under threshold.
func runStart(s []sample, threshold int64) int {
	i := len(s)
	for i > 0 && s[i-1].bytes >= threshold {
		i--
	}
	return i
}

// share returns percent % of limit, rounded up: a sample of a whole number of bytes is at that
// share of the limit or more exactly when it is at the rounded-up share or more.
func share(limit, percent int64) int64 {
	return limit/100*percent + (limit%100*percent+99)/100
}

// flat returns the rise of flatGrowthPercent of limit, in bytes.
func flat(limit int64) float64 {
	return float64(limit) * flatGrowthPercent / 100
}

// slope returns the slope, in bytes per second, of the least-squares line through samples s,
// which are known to be later each than the one before; it is unknown for fewer than 2.
func slope(s []sample) (float64, bool) {
	if len(s) < 2 {
		return 0, false
	}
	var meanT, meanB float64
	for _, x := range s {
		meanT += seconds(s[0].at, x.at)
		meanB += float64(x.bytes)
	}
	n := float64(len(s))
	meanT, meanB = meanT/n, meanB/n
	var cov, v float64
	for _, x := range s {
		dt := seconds(s[0].at, x.at) - meanT
		cov += dt * (float64(x.bytes) - meanB)
		v += dt * dt
	}
	return cov / v, true
}

// seconds returns the seconds from from to to.
func seconds(from, to int64) float64 {
	return float64(elapsed(from, to)) / float64(time.Second)
}
