// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package workingset_test

// What the Tracker remembers of the Summary's readings, and which one explains a kill.

import (
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workingset"
)

// at is the reading of bytes taken d after podtest.T0.
func at(d time.Duration, bytes int64) workingset.Reading {
	return workingset.Reading{Bytes: bytes, At: podtest.T0.Add(d)}
}

// hog returns the readings of one scrape that read container hog only.
func hog(r workingset.Reading) map[string]workingset.Reading {
	return map[string]workingset.Reading{"hog": r}
}

// The Summary goes on listing a killed instance for about a second, stamped in the second of the
// kill: the reading before explains the kill.
func TestExplainingIsTheReadingBeforeTheKillsSecond(t *testing.T) {
	tr := workingset.New[string]()
	tr.Remember(1, maps.All(hog(at(29*time.Second, 60<<20))))
	tr.Remember(2, maps.All(hog(at(30*time.Second, 253952))))
	got, ok := tr.Explaining("hog", podtest.T0, podtest.T0.Add(30*time.Second))
	assert.True(t, ok)
	assert.Equal(t, at(29*time.Second, 60<<20), got)
	latest, ok := tr.Latest("hog")
	assert.True(t, ok)
	assert.Equal(t, at(30*time.Second, 253952), latest, "the latest reading is what is left")
}

// A reading of an earlier instance, before the killed one started, does not explain its kill.
func TestExplainingIsInsideTheInstancesLife(t *testing.T) {
	tr := workingset.New[string]()
	tr.Remember(1, maps.All(hog(at(10*time.Second, 60<<20))))
	_, ok := tr.Explaining("hog", podtest.T0.Add(20*time.Second), podtest.T0.Add(2*time.Minute))
	assert.False(t, ok)
	got, ok := tr.Explaining("hog", time.Time{}, podtest.T0.Add(2*time.Minute))
	assert.True(t, ok, "without a start, any reading before the end")
	assert.Equal(t, at(10*time.Second, 60<<20), got)
}

// A reading of the same time again does not push out the one before.
func TestTheSameReadingAgainKeepsTheOneBefore(t *testing.T) {
	tr := workingset.New[string]()
	tr.Remember(1, maps.All(hog(at(10*time.Second, 50<<20))))
	tr.Remember(2, maps.All(hog(at(20*time.Second, 60<<20))))
	tr.Remember(3, maps.All(hog(at(20*time.Second, 60<<20))))
	got, ok := tr.Explaining("hog", podtest.T0, podtest.T0.Add(20*time.Second))
	assert.True(t, ok)
	assert.Equal(t, at(10*time.Second, 50<<20), got)
}

func TestReadingsAreForgottenAfterSixScrapes(t *testing.T) {
	tr := workingset.New[string]()
	tr.Remember(1, maps.All(hog(at(10*time.Second, 60<<20))))
	for scrape := uint64(2); scrape <= 7; scrape++ {
		tr.Remember(scrape, maps.All(map[string]workingset.Reading{}))
	}
	_, ok := tr.Latest("hog")
	assert.True(t, ok, "kept six scrapes after the Summary stopped listing it")
	tr.Remember(8, maps.All(map[string]workingset.Reading{}))
	_, ok = tr.Latest("hog")
	assert.False(t, ok)
	_, ok = tr.Explaining("hog", time.Time{}, podtest.T0.Add(time.Minute))
	assert.False(t, ok)
}
