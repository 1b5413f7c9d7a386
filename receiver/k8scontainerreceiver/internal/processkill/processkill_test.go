// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package processkill_test

// The Tracker as the scraper drives it: a reading per scrape, the kills it finds, and the
// counters saved and restored across a restart.

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/processkill"
)

// hog is the counter of instance id of container hog in pod u1.
func hog(id string, value uint64) kubelet.OOMCounter {
	return kubelet.OOMCounter{PodUID: "u1", Container: "hog", ContainerID: id, Value: value}
}

// killsOfHog reads counters as scrape and returns the kills of container hog.
func killsOfHog(t *processkill.Tracker, scrape uint64, counters ...kubelet.OOMCounter) processkill.Kills {
	t.Read(counters, scrape, true)
	defer t.Handed()
	return t.Kills("u1", "hog")
}

func TestBaselineThenGrowth(t *testing.T) {
	tr := processkill.New()
	assert.True(t, tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true), "a new counter is saved")
	assert.Equal(t, processkill.Kills{}, tr.Kills("u1", "hog"), "the first reading is a baseline")
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 10)))
	assert.False(t, tr.Read([]kubelet.OOMCounter{hog("hog-0", 10)}, 2, true), "nothing changed")
	assert.Equal(t, processkill.Kills{}, tr.Kills("u1", "hog"))
}

// After the first reading, a new instance started since: all its kills are new, and they add up
// with the other instances' of the same container.
func TestANewInstanceCountsWhole(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true)
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-1"}, killsOfHog(tr, 1, hog("hog-0", 8), hog("hog-1", 2)))
}

// A kubelet that restarted counts again from zero: its value is the kills since.
func TestACounterThatWentDown(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true)
	assert.Equal(t, processkill.Kills{N: 2, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 2)))
}

// An instance missing from a few answers and back does not count again from zero; one missing
// for longer is forgotten, and counts whole when it is back.
func TestACounterMissingForAFewScrapes(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true)
	for scrape := uint64(1); scrape <= 6; scrape++ {
		assert.False(t, tr.Read(nil, scrape, true), "kept for scrape %d", scrape)
	}
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 6, hog("hog-0", 8)))
	for scrape := uint64(7); scrape <= 12; scrape++ {
		tr.Read(nil, scrape, true)
	}
	assert.True(t, tr.Read(nil, 13, true), "forgotten after 6 scrapes without a reading")
	assert.Equal(t, processkill.Kills{N: 8, ContainerID: "hog-0"}, killsOfHog(tr, 14, hog("hog-0", 8)))
}

func TestRestoreThenGrowth(t *testing.T) {
	first := processkill.New()
	first.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true)
	saved, err := first.Save()
	require.NoError(t, err)
	assert.JSONEq(t, `{"hog-0": {"pod_uid": "u1", "container": "hog", "value": 7}}`, string(saved))

	second := processkill.New()
	require.NoError(t, second.Restore(saved))
	assert.Equal(t, processkill.Kills{N: 6, ContainerID: "hog-1"}, killsOfHog(second, 0, hog("hog-0", 9), hog("hog-1", 4)),
		"growth while no receiver read, and an instance that started since")
}

func TestRestoreDamagedCounters(t *testing.T) {
	tr := processkill.New()
	require.Error(t, tr.Restore([]byte("{")))
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 0, hog("hog-0", 7)), "nothing restored: a baseline")
}

// A reading that does not hold every instance (the cgroup source before the pod list arrived)
// primes nothing: the counters of the first complete reading are the baseline, their lifetime
// kills no news.
func TestAnIncompleteReadingPrimesNothing(t *testing.T) {
	tr := processkill.New()
	tr.Read(nil, 0, false)
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 1, hog("hog-0", 40)))
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 2, hog("hog-0", 41)))
}

// Kills wait until they are handed on: a scrape that could not hand them on loses none.
func TestKillsWaitUntilHandedOn(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true)
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 2)}, 1, true)
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 3)}, 2, true)
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, tr.Kills("u1", "hog"))
	tr.Handed()
	assert.Equal(t, processkill.Kills{}, tr.Kills("u1", "hog"))
}

// A counter that went down to a value above zero (the kubelet restarted and counted again)
// counts its new value, not nothing.
func TestACounterThatWentDownNotToZero(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true)
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 3)))
}

// A kill the pod status showed inside an instance (OOMKilled, PID 1 exited by itself) is one
// process kill: added when the counter never showed a kill there, and not again when the
// counter shows it later; not added when the counter already counted it.
func TestAbsorbAKillThePodStatusShowed(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true)
	assert.True(t, tr.Absorb("hog-0", "u1", "hog"))
	assert.False(t, tr.Absorb("hog-0", "u1", "hog"), "the same kill again")
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, tr.Kills("u1", "hog"))
	tr.Handed()
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 1, hog("hog-0", 1)), "the counter's late 1 is that kill")
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 2, hog("hog-0", 2)), "a second kill is one")

	seen := processkill.New()
	seen.Read([]kubelet.OOMCounter{hog("hog-1", 0)}, 0, true)
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-1"}, killsOfHog(seen, 1, hog("hog-1", 1)))
	seen.Absorb("hog-1", "u1", "hog")
	assert.Equal(t, processkill.Kills{}, seen.Kills("u1", "hog"), "the counter counted it")

	// Never read before: the credit survives a restart with the counters.
	unread := processkill.New()
	unread.Read(nil, 0, true)
	assert.True(t, unread.Absorb("hog-2", "u1", "hog"))
	unread.Handed()
	saved, err := unread.Save()
	require.NoError(t, err)
	restarted := processkill.New()
	require.NoError(t, restarted.Restore(saved))
	assert.Equal(t, processkill.Kills{}, killsOfHog(restarted, 1, hog("hog-2", 1)))
}

// Take hands a container's kills on: a second look at the same container in the same scrape
// (a static pod under two mirror pods) finds none.
func TestTakeHandsOnOnce(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true)
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 2)}, 1, true)
	assert.Equal(t, processkill.Kills{N: 2, ContainerID: "hog-0"}, tr.Take("u1", "hog"))
	assert.Equal(t, processkill.Kills{}, tr.Take("u1", "hog"))
}
