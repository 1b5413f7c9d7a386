// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package workingset keeps the working sets the kubelet's Summary API reported of each
// container, for the kill records of later scrapes: a kill shows in the pod status only after
// the instance ended, when the Summary no longer shows what it used.
package workingset

import (
	"iter"
	"time"
)

// keepScrapes is how many scrapes a reading outlives the Summary listing its container: its kill
// may show in the pod status only after the Summary stopped listing it.
const keepScrapes = 6

// Reading is a container's working set as the Summary API reported it.
type Reading struct {
	Bytes int64
	At    time.Time
}

// readings are a container's two latest readings of different times: the Summary goes on
// listing a killed instance for about a second with what is left of it, stamped, to the second
// as the kill's end is, in the second of the kill. The reading before that one explains the kill.
type readings struct {
	latest, before Reading
	// scrape is the number of the scrape that read latest.
	scrape uint64
}

// Tracker holds the readings of each container, named by K.
type Tracker[K comparable] struct {
	containers map[K]readings
}

// New returns a tracker without readings.
func New[K comparable]() *Tracker[K] {
	return &Tracker[K]{containers: map[K]readings{}}
}

// Remember keeps the readings of the scrape numbered scrape, and forgets those of containers
// that no scrape read in the last few.
func (t *Tracker[K]) Remember(scrape uint64, read iter.Seq2[K, Reading]) {
	for k, reading := range read {
		r := t.containers[k]
		if reading.At.After(r.latest.At) {
			r.before = r.latest
		}
		r.latest, r.scrape = reading, scrape
		t.containers[k] = r
	}
	for k, r := range t.containers {
		if scrape-r.scrape > keepScrapes {
			delete(t.containers, k)
		}
	}
}

// Latest returns the latest reading of container k.
func (t *Tracker[K]) Latest(k K) (Reading, bool) {
	r, ok := t.containers[k]
	return r.latest, ok
}

// Explaining returns the last reading of container k taken before the second of its instance's
// end, finished (which a status gives to the second), and while the instance ran, from started
// on (zero if unknown).
func (t *Tracker[K]) Explaining(k K, started, finished time.Time) (Reading, bool) {
	r := t.containers[k]
	for _, reading := range [...]Reading{r.latest, r.before} {
		if !reading.At.IsZero() && reading.At.Before(finished) && (started.IsZero() || !reading.At.Before(started)) {
			return reading, true
		}
	}
	return Reading{}, false
}
