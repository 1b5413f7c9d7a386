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
	t.Read(counters, scrape)
	return t.Kills("u1", "hog")
}

func TestBaselineThenGrowth(t *testing.T) {
	tr := processkill.New()
	assert.True(t, tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0), "a new counter is saved")
	assert.Equal(t, processkill.Kills{}, tr.Kills("u1", "hog"), "the first reading is a baseline")
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 10)))
	assert.False(t, tr.Read([]kubelet.OOMCounter{hog("hog-0", 10)}, 2), "nothing changed")
	assert.Equal(t, processkill.Kills{}, tr.Kills("u1", "hog"))
}

// After the first reading, a new instance started since: all its kills are new, and they add up
// with the other instances' of the same container.
func TestANewInstanceCountsWhole(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0)
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-1"}, killsOfHog(tr, 1, hog("hog-0", 8), hog("hog-1", 2)))
}

// A kubelet that restarted counts again from zero: its value is the kills since.
func TestACounterThatWentDown(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0)
	assert.Equal(t, processkill.Kills{N: 2, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 2)))
}

// An instance missing from a few answers and back does not count again from zero; one missing
// for longer is forgotten, and counts whole when it is back.
func TestACounterMissingForAFewScrapes(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0)
	for scrape := uint64(1); scrape <= 6; scrape++ {
		assert.False(t, tr.Read(nil, scrape), "kept for scrape %d", scrape)
	}
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 6, hog("hog-0", 8)))
	for scrape := uint64(7); scrape <= 12; scrape++ {
		tr.Read(nil, scrape)
	}
	assert.True(t, tr.Read(nil, 13), "forgotten after 6 scrapes without a reading")
	assert.Equal(t, processkill.Kills{N: 8, ContainerID: "hog-0"}, killsOfHog(tr, 14, hog("hog-0", 8)))
}

func TestRestoreThenGrowth(t *testing.T) {
	first := processkill.New()
	first.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0)
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
