// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package processkill turns the OOM kill counters of container instances into each container's
// process kills since the previous reading. The kubelet's cAdvisor counts the OOM kills of each
// instance (container_oom_events_total on /metrics/cadvisor), and so does the kernel per cgroup
// (oom_kill); the pod status shows none of them while the container lives.
package processkill

import (
	"encoding/json"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
)

// keepScrapes is how many scrapes a counter outlives its last reading: an instance that is
// missing from one answer and back in the next must not count again from zero.
const keepScrapes = 6

// Kills are one container's process kills not yet handed on.
type Kills struct {
	N int64
	// ContainerID is the instance of the latest kills.
	ContainerID string
}

// counter is one container instance's counter as last read; the JSON names are those of the
// saved counters.
type counter struct {
	PodUID    string `json:"pod_uid"`
	Container string `json:"container"`
	Value     uint64 `json:"value"`
	// Credit are kills of the instance already counted from its pod status (see Absorb), which
	// the counter's growth does not count again.
	Credit uint64 `json:"credit,omitempty"`
	// Absorbed tells that the kill the pod status showed inside the instance is accounted for.
	Absorbed bool `json:"absorbed,omitempty"`
	// scrape is the number of the scrape that last read it.
	scrape uint64
}

// container is a container by its pod's UID and its name.
type container struct{ podUID, name string }

// Tracker holds the counters as last read, by container ID, and the kills not yet handed on.
type Tracker struct {
	counters map[string]*counter
	// primed tells that one complete reading, of this run or restored, exists.
	primed bool
	kills  map[container]Kills
	// scrape is the number of the latest reading.
	scrape uint64
}

// New returns a tracker that has read nothing.
func New() *Tracker {
	return &Tracker{counters: map[string]*counter{}, kills: map[container]Kills{}}
}

// Read takes the counters of the scrape numbered scrape and adds each container's kills since
// the previous reading to those not yet handed on. A counter read for the first time is a
// baseline, unless an earlier complete reading exists: then its instance started since, and all
// its kills are new. complete tells that the reading holds every container instance there is;
// one that is not (the cgroup source before the pod list arrived) primes nothing. It tells
// whether the counters Save returns changed.
func (t *Tracker) Read(counters []kubelet.OOMCounter, scrape uint64, complete bool) (changed bool) {
	t.scrape = scrape
	for _, c := range counters {
		prev := t.counters[c.ContainerID]
		var n uint64
		switch {
		case prev == nil:
			if t.primed {
				n = c.Value
			}
			prev = &counter{PodUID: c.PodUID, Container: c.Container}
			t.counters[c.ContainerID] = prev
			changed = true
		case c.Value >= prev.Value:
			n = c.Value - prev.Value
		default:
			// The kubelet restarted and its cAdvisor counts again from zero.
			n = c.Value
		}
		if c.Value != prev.Value {
			changed = true
		}
		prev.Value, prev.scrape = c.Value, scrape
		if credit := min(n, prev.Credit); credit > 0 {
			n -= credit
			prev.Credit -= credit
			changed = true
		}
		if n > 0 {
			k := container{c.PodUID, c.Container}
			kills := t.kills[k]
			kills.N += int64(min(n, 1<<62))
			kills.ContainerID = c.ContainerID
			t.kills[k] = kills
		}
	}
	for id, c := range t.counters {
		if scrape-c.scrape > keepScrapes {
			delete(t.counters, id)
			changed = true
		}
	}
	t.primed = t.primed || complete
	return changed
}

// Absorb takes a kill that the pod status showed inside the instance containerID of container
// name of pod podUID (marked OOMKilled though PID 1 exited by itself): one process kill. If the
// instance's counter already counted a kill, that was it; else it is added to the kills not yet
// handed on, and the counter's growth does not count it again. An instance has one such kill:
// taken again, it changes nothing. It tells whether it changed what Save returns.
func (t *Tracker) Absorb(containerID, podUID, name string) bool {
	c := t.counters[containerID]
	if c == nil {
		// A counter first read after this is no baseline: the instance ran while watched.
		c = &counter{PodUID: podUID, Container: name, scrape: t.scrape}
		t.counters[containerID] = c
	}
	if c.Absorbed {
		return false
	}
	c.Absorbed = true
	if c.Value > 0 {
		return true
	}
	c.Credit++
	k := container{podUID, name}
	kills := t.kills[k]
	kills.N++
	kills.ContainerID = containerID
	t.kills[k] = kills
	return true
}

// Kills returns the kills of the container name of pod podUID not yet handed on.
func (t *Tracker) Kills(podUID, name string) Kills {
	return t.kills[container{podUID, name}]
}

// Take returns the kills of the container name of pod podUID not yet handed on, as Kills does,
// and hands them on: a static pod whose mirror pod was deleted and created again since the
// previous scrape shows its containers under both mirror pods, and their kills go out once.
func (t *Tracker) Take(podUID, name string) Kills {
	k := container{podUID, name}
	kills := t.kills[k]
	delete(t.kills, k)
	return kills
}

// Handed tells that the kills were handed on.
func (t *Tracker) Handed() { clear(t.kills) }

// Save returns the counters as last read, as Restore reads them.
func (t *Tracker) Save() ([]byte, error) {
	return json.Marshal(t.counters)
}

// Restore takes the counters an earlier run saved: after a restart, the kills while no receiver
// read are the growth since then. Damaged counters are discarded, and the error says so.
func (t *Tracker) Restore(saved []byte) error {
	restored := map[string]*counter{}
	if err := json.Unmarshal(saved, &restored); err != nil {
		return err
	}
	t.counters = restored
	t.primed = true
	return nil
}
