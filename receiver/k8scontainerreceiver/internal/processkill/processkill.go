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

// Kills are one container's process kills since the previous reading.
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
	// scrape is the number of the scrape that last read it.
	scrape uint64
}

// container is a container by its pod's UID and its name.
type container struct{ podUID, name string }

// Tracker holds the counters as last read, by container ID, and the kills of the latest reading.
type Tracker struct {
	counters map[string]*counter
	// primed tells that one reading, of this run or restored, exists.
	primed bool
	kills  map[container]Kills
}

// New returns a tracker that has read nothing.
func New() *Tracker {
	return &Tracker{counters: map[string]*counter{}, kills: map[container]Kills{}}
}

// Read takes the counters of the scrape numbered scrape and works out each container's kills
// since the previous reading. A counter read for the first time is a baseline, unless an earlier
// reading exists: then its instance started since, and all its kills are new. It tells whether
// the counters Save returns changed.
func (t *Tracker) Read(counters []kubelet.OOMCounter, scrape uint64) (changed bool) {
	clear(t.kills)
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
	t.primed = true
	return changed
}

// Kills returns the kills the latest Read found in the container name of pod podUID.
func (t *Tracker) Kills(podUID, name string) Kills {
	return t.kills[container{podUID, name}]
}

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
