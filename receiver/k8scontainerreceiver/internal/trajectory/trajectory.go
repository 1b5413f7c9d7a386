// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package trajectory keeps a short window of the working sets the kubelet's Summary API
// reported of each container, and tells from it, at an OOM kill, how the container's memory got
// there: its peak, its growth rate, the time from 80 % of its limit to the kill, and a class.
//
// A Tracker belongs to one goroutine, the receiver's scrape loop, and has no lock.
package trajectory

import (
	"math"
	"slices"
	"time"
)

const (
	// DefaultMaxSamples bounds the samples of a window: at the default 10 s scrape interval
	// DefaultMaxAge holds 31 samples, so the whole age fits; a sample takes 16 bytes, a full
	// window 512.
	DefaultMaxSamples = 32
	// DefaultMaxAge is how far before its newest sample a window reaches: far enough to hold a
	// life at the limit of steadyMinRun and the climb before it; older readings say little of
	// how the memory came to the kill.
	DefaultMaxAge = 5 * time.Minute
	// DefaultKeepScrapes is how many scrapes a window outlives the Summary listing its instance:
	// the kill may show in the pod status only after the Summary stopped listing it, or after
	// the next instance started.
	DefaultKeepScrapes = 6

	// minMaxSamples is the least bound a window can have: thinning keeps its first and its
	// peak, and needs a third sample to drop.
	minMaxSamples = 3
)

// Sample is a container's working set as the Summary API reported it.
type Sample struct {
	Bytes int64
	At    time.Time
}

// Options bound what a Tracker keeps. A zero field takes its default.
type Options struct {
	// MaxSamples bounds the samples of a window; less than 3 is taken as 3.
	MaxSamples int
	// MaxAge is how far before its newest sample a window reaches, and before the kill Explain
	// looks.
	MaxAge time.Duration
	// KeepScrapes is how many scrapes a window outlives the last that sampled its instance.
	KeepScrapes uint64
}

// sample is a Sample as a window keeps it, its time in Unix nanoseconds: half the size of a
// time.Time, and windows hold nothing but samples.
type sample struct {
	bytes, at int64
}

// window holds the samples of one instance of a container, oldest first, each later than the
// one before.
type window struct {
	instance string
	// samples is nil for no window.
	samples []sample
	// scrape is the number of the last scrape that sampled the instance.
	scrape uint64
}

// windows are a container's windows: the current instance's, and the one before it, kept as
// the kill that ended it usually shows in the pod status after the next instance started. The
// pod status shows the last termination only, so no earlier window can explain a kill.
type windows struct {
	current, ended window
}

// Tracker holds the windows of each container, named by K.
type Tracker[K comparable] struct {
	containers  map[K]*windows
	maxSamples  int
	maxAge      int64
	keepScrapes uint64
	// scrape is the number of the scrape under way.
	scrape uint64
}

// New returns a tracker without windows.
func New[K comparable](opts Options) *Tracker[K] {
	t := &Tracker[K]{
		containers:  map[K]*windows{},
		maxSamples:  opts.MaxSamples,
		maxAge:      int64(opts.MaxAge),
		keepScrapes: opts.KeepScrapes,
	}
	if t.maxSamples == 0 {
		t.maxSamples = DefaultMaxSamples
	}
	t.maxSamples = max(t.maxSamples, minMaxSamples)
	if t.maxAge <= 0 {
		t.maxAge = int64(DefaultMaxAge)
	}
	if t.keepScrapes == 0 {
		t.keepScrapes = DefaultKeepScrapes
	}
	return t
}

// Add keeps sample s of container k's instance named instance, which must name it the same way
// at Explain (its container ID, or its start time). A new instance starts a new window, and the
// current one becomes the ended one. A sample without a time, or not later than the window's
// newest, is left out: the Summary repeats a reading until the next one is taken.
func (t *Tracker[K]) Add(k K, instance string, s Sample) {
	if s.At.IsZero() {
		return
	}
	c := t.containers[k]
	if c == nil {
		c = &windows{}
		t.containers[k] = c
	}
	w := c.of(instance)
	if w == nil {
		w = c.start(instance, t.maxSamples)
	}
	w.scrape = t.scrape
	w.add(sample{bytes: s.Bytes, at: s.At.UnixNano()}, t.maxAge, t.maxSamples)
}

// EndScrape ends the scrape under way, and drops the windows of instances that more than
// KeepScrapes scrapes, this one included, did not sample.
func (t *Tracker[K]) EndScrape() {
	for k, c := range t.containers {
		for _, w := range [...]*window{&c.current, &c.ended} {
			if w.samples != nil && t.scrape-w.scrape > t.keepScrapes {
				*w = window{}
			}
		}
		if c.current.samples == nil && c.ended.samples == nil {
			delete(t.containers, k)
		}
	}
	t.scrape++
}

// of returns the window of instance, or nil.
func (c *windows) of(instance string) *window {
	switch {
	case c.current.samples != nil && c.current.instance == instance:
		return &c.current
	case c.ended.samples != nil && c.ended.instance == instance:
		return &c.ended
	}
	return nil
}

// start returns a new window for instance as the current one. The window it replaces becomes
// the ended one, and the room of the ended one it drops serves the new one.
func (c *windows) start(instance string, maxSamples int) *window {
	var room []sample
	if c.current.samples != nil {
		room = c.ended.samples[:0]
		c.ended = c.current
	}
	if room == nil {
		room = make([]sample, 0, maxSamples)
	}
	c.current = window{instance: instance, samples: room}
	return &c.current
}

// add appends s, drops the samples more than maxAge older, and thins a full window.
func (w *window) add(s sample, maxAge int64, maxSamples int) {
	n := len(w.samples)
	if n > 0 && s.at <= w.samples[n-1].at {
		return
	}
	aged := 0
	for aged < n && elapsed(w.samples[aged].at, s.at) > maxAge {
		aged++
	}
	w.samples = slices.Delete(w.samples, 0, aged)
	if len(w.samples) >= maxSamples {
		w.thin(s.at)
	}
	w.samples = append(w.samples, s)
}

// thin drops one sample of a full window, before a sample at next joins it: the one whose loss
// leaves the shortest gap between its neighbours, the older of equals, never the first nor the
// peak. Dropping the oldest instead would shrink the window to MaxSamples scrape intervals, 32 s
// at a 1 s interval, too short to show a life at the limit or a slow climb; thinning keeps the
// window about MaxAge long, its samples spread evenly, no two further apart than twice
// MaxAge/MaxSamples (19 s by default) at a steady interval. The peak stays: records report it.
func (w *window) thin(next int64) {
	s := w.samples
	peak := 0
	for i := range s {
		if s[i].bytes > s[peak].bytes {
			peak = i
		}
	}
	drop, shortest := -1, int64(math.MaxInt64)
	for i := 1; i < len(s); i++ {
		if i == peak {
			continue
		}
		after := next
		if i+1 < len(s) {
			after = s[i+1].at
		}
		if gap := elapsed(s[i-1].at, after); drop < 0 || gap < shortest {
			drop, shortest = i, gap
		}
	}
	w.samples = slices.Delete(s, drop, drop+1)
}

// before returns the samples taken before the time cut, in Unix nanoseconds, and no more than
// maxAge earlier.
func (w *window) before(cut, maxAge int64) []sample {
	s := w.samples
	hi := len(s)
	for hi > 0 && s[hi-1].at >= cut {
		hi--
	}
	lo := 0
	for lo < hi && elapsed(s[lo].at, cut) > maxAge {
		lo++
	}
	return s[lo:hi]
}

// elapsed returns to-from for from <= to, the largest int64 if that does not fit.
func elapsed(from, to int64) int64 {
	if d := to - from; d >= 0 {
		return d
	}
	return math.MaxInt64
}
