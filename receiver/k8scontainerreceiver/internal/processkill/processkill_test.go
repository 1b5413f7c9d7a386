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
	t.Read(counters, scrape, true, nil)
	defer t.Handed()
	return t.Take("u1", "hog")
}

func TestBaselineThenGrowth(t *testing.T) {
	tr := processkill.New()
	assert.True(t, tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true, nil), "a new counter is saved")
	assert.Equal(t, processkill.Kills{}, tr.Take("u1", "hog"), "the first reading is a baseline")
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 10)))
	assert.False(t, tr.Read([]kubelet.OOMCounter{hog("hog-0", 10)}, 2, true, nil), "nothing changed")
	assert.Equal(t, processkill.Kills{}, tr.Take("u1", "hog"))
}

// After the first reading, a new instance started since: all its kills are new, and they add up
// with the other instances' of the same container.
func TestANewInstanceCountsWhole(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true, nil)
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-1"}, killsOfHog(tr, 1, hog("hog-0", 8), hog("hog-1", 2)))
}

// A kubelet that restarted counts again from zero: its value is the kills since.
func TestACounterThatWentDown(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true, nil)
	assert.Equal(t, processkill.Kills{N: 2, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 2)))
}

// pods is what a pod list shows: the instances by container ID, and the containers whose whole
// life the receiver watched.
type pods struct {
	shown map[string]bool
	whole map[string]bool
}

func (p pods) Shows(id string) bool                  { return p.shown[id] }
func (p pods) WatchedWhole(podUID, name string) bool { return p.whole[podUID+"/"+name] }

// An instance missing from a few answers and back does not count again from zero. One missing
// for longer is kept as long as a pod shows it, or no pod list can tell; else it is forgotten,
// and a baseline when it is back.
func TestACounterMissingForAFewScrapes(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true, nil)
	for scrape := uint64(1); scrape <= 6; scrape++ {
		assert.False(t, tr.Read(nil, scrape, true, pods{}), "kept for scrape %d", scrape)
	}
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 6, hog("hog-0", 8)))
	shown := pods{shown: map[string]bool{"hog-0": true}}
	for scrape := uint64(7); scrape <= 20; scrape++ {
		assert.False(t, tr.Read(nil, scrape, true, shown), "shown: kept for scrape %d", scrape)
	}
	for scrape := uint64(21); scrape <= 40; scrape++ {
		assert.False(t, tr.Read(nil, scrape, true, nil), "no pod list: kept for scrape %d", scrape)
	}
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 41, hog("hog-0", 9)))
	for scrape := uint64(42); scrape <= 47; scrape++ {
		tr.Read(nil, scrape, true, pods{})
	}
	assert.True(t, tr.Read(nil, 48, true, pods{}), "forgotten after 6 scrapes unread and unshown")
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 49, hog("hog-0", 10)), "a baseline when back")
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 50, hog("hog-0", 11)))
}

// Before the pod list arrived, a counter is kept far longer, but not for ever.
func TestACounterMissingWithoutAPodList(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true, nil)
	assert.False(t, tr.Read(nil, 360, true, nil))
	assert.True(t, tr.Read(nil, 361, true, nil), "forgotten")
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 362, hog("hog-0", 9)), "a baseline when back")
}

// An instance the first complete reading did not read may have run long before: read later, it
// is a baseline, unless an earlier instance of its container was read (it started after that
// reading) or the receiver watched its container's whole life.
func TestAnInstanceMissingFromTheFirstReading(t *testing.T) {
	tr := processkill.New()
	tr.Read(nil, 0, true, pods{})
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 1, hog("hog-0", 7)), "maybe there at the first reading")
	assert.Equal(t, processkill.Kills{N: 2, ContainerID: "hog-1"}, killsOfHog(tr, 2, hog("hog-1", 2)), "started after hog-0 was read")

	watched := processkill.New()
	watched.Read(nil, 0, true, pods{})
	watched.Read([]kubelet.OOMCounter{hog("hog-0", 3)}, 1, true, pods{whole: map[string]bool{"u1/hog": true}})
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, watched.Take("u1", "hog"), "its pod was created while watched")

	// Two instances of a container both read for the first time are both baselines.
	both := processkill.New()
	both.Read(nil, 0, true, pods{})
	assert.Equal(t, processkill.Kills{}, killsOfHog(both, 1, hog("hog-0", 3), hog("hog-1", 2)))
}

// Kills of a container no pod shows wait until one does, and are handed on once; they wait 30
// scrapes at most.
func TestKillsWaitForTheirPod(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true, nil)
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 2)}, 1, true, nil)
	tr.Handed()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 3)}, 2, true, nil)
	tr.Handed()
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, tr.Take("u1", "hog"))
	tr.Handed()
	assert.Equal(t, processkill.Kills{}, tr.Take("u1", "hog"))

	tr.Read([]kubelet.OOMCounter{hog("hog-0", 4)}, 3, true, nil)
	for scrape := uint64(4); scrape < 33; scrape++ {
		tr.Read([]kubelet.OOMCounter{hog("hog-0", 4)}, scrape, true, nil)
		tr.Handed()
	}
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, tr.Take("u1", "hog"), "waited 29 scrapes")
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 4)}, 33, true, nil)
	tr.Handed()
	assert.Equal(t, processkill.Kills{}, tr.Take("u1", "hog"), "dropped after 30")
}

// A reading without counters primes all the same, and says so: a restart with storage is
// primed.
func TestAnEmptyCompleteReadingIsSaved(t *testing.T) {
	tr := processkill.New()
	assert.False(t, tr.Read(nil, 0, false, nil))
	assert.True(t, tr.Read(nil, 1, true, nil))
	saved, err := tr.Save()
	require.NoError(t, err)
	restarted := processkill.New()
	require.NoError(t, restarted.Restore(saved))
	restarted.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true, nil)
	assert.Equal(t, processkill.Kills{N: 2, ContainerID: "hog-1"}, killsOfHog(restarted, 1, hog("hog-1", 2)))
}

func TestRestoreThenGrowth(t *testing.T) {
	first := processkill.New()
	first.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true, nil)
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
	tr.Read(nil, 0, false, nil)
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 1, hog("hog-0", 40)))
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 2, hog("hog-0", 41)))
}

// Kills wait until they are handed on: a scrape that could not hand them on loses none.
func TestKillsWaitUntilHandedOn(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true, nil)
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 2)}, 1, true, nil)
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 3)}, 2, true, nil)
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, tr.Take("u1", "hog"))
	tr.Take("u1", "hog")
	tr.Handed()
	assert.Equal(t, processkill.Kills{}, tr.Take("u1", "hog"))
}

// A counter that went down to a value above zero (the kubelet restarted and counted again)
// counts its new value, not nothing.
func TestACounterThatWentDownNotToZero(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 7)}, 0, true, nil)
	assert.Equal(t, processkill.Kills{N: 3, ContainerID: "hog-0"}, killsOfHog(tr, 1, hog("hog-0", 3)))
}

// A kill the pod status showed inside an instance (OOMKilled, PID 1 exited by itself) is one
// process kill: added when the counter never showed a kill there, and not again when the
// counter shows it later; not added when the counter already counted it.
func TestAbsorbAKillThePodStatusShowed(t *testing.T) {
	tr := processkill.New()
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true, nil)
	assert.True(t, tr.Absorb("hog-0", "u1", "hog"))
	assert.False(t, tr.Absorb("hog-0", "u1", "hog"), "the same kill again")
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, tr.Take("u1", "hog"))
	tr.Handed()
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 1, hog("hog-0", 1)), "the counter's late 1 is that kill")
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 2, hog("hog-0", 2)), "a second kill is one")

	seen := processkill.New()
	seen.Read([]kubelet.OOMCounter{hog("hog-1", 0)}, 0, true, nil)
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-1"}, killsOfHog(seen, 1, hog("hog-1", 1)))
	seen.Absorb("hog-1", "u1", "hog")
	assert.Equal(t, processkill.Kills{}, seen.Take("u1", "hog"), "the counter counted it")

	// Never read before: the credit survives a restart with the counters.
	unread := processkill.New()
	unread.Read(nil, 0, true, nil)
	assert.True(t, unread.Absorb("hog-2", "u1", "hog"))
	unread.Take("u1", "hog")
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
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 0)}, 0, true, nil)
	tr.Read([]kubelet.OOMCounter{hog("hog-0", 2)}, 1, true, nil)
	assert.Equal(t, processkill.Kills{N: 2, ContainerID: "hog-0"}, tr.Take("u1", "hog"))
	assert.Equal(t, processkill.Kills{}, tr.Take("u1", "hog"))
}

// On cgroup v2 the kubelet sets memory.oom.group on each container: one OOM kills all its
// processes, and oom_kill grows by one or more per process. The container ended: its status
// shows the container OOM kill, and none of that growth is a process kill. Kills of one process
// at a time (the group kill off) count as before.
func TestAGroupKillIsNoProcessKill(t *testing.T) {
	tr := processkill.New()
	grouped := func(id string, value, groups uint64) kubelet.OOMCounter {
		c := hog(id, value)
		c.GroupKills = groups
		return c
	}
	tr.Read([]kubelet.OOMCounter{grouped("hog-0", 2, 0)}, 0, true, nil)
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-0"}, killsOfHog(tr, 1, grouped("hog-0", 3, 0)))
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 2, grouped("hog-0", 9, 1)), "four processes killed at once")
	assert.Equal(t, processkill.Kills{}, killsOfHog(tr, 3, grouped("hog-1", 6, 1)), "a new instance already ended by a group kill")

	saved, err := tr.Save()
	require.NoError(t, err)
	restored := processkill.New()
	require.NoError(t, restored.Restore(saved))
	assert.Equal(t, processkill.Kills{N: 1, ContainerID: "hog-1"}, killsOfHog(restored, 4, grouped("hog-1", 7, 1)), "the group kills as read are kept")
}
