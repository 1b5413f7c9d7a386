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

// keepScrapes is how many scrapes a counter outlives its last reading while no pod shows its
// instance: an instance that is missing from a few answers and back in the next must not count
// again from zero. A counter whose instance a pod shows is kept however long it is missing.
const keepScrapes = 6

// keepUnlisted is how many scrapes a counter outlives its last reading before the pod list
// arrived, when no pod can tell whether its instance lives: it bounds the counters of a
// receiver that never gets its pod list.
const keepUnlisted = 360

// waitScrapes is how many scrapes kills wait for a pod to show their container (a slow pod
// list, a static pod's mirror pod deleted and not created again yet); older ones are dropped.
const waitScrapes = 30

// Kills are one container's process kills not yet handed on.
type Kills struct {
	N int64
	// ContainerID is the instance of the latest kills.
	ContainerID string
}

// waiting are kills not yet handed on, and the scrape since which they wait.
type waiting struct {
	Kills
	since uint64
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
	// GroupKills is the instance's count of group kills as last read.
	GroupKills uint64 `json:"group_kills,omitempty"`
	// scrape is the number of the scrape that last read it.
	scrape uint64
}

// container is a container by its pod's UID and its name.
type container struct{ podUID, name string }

// Pods is what the pod list shows, as the receiver holds it at a reading.
type Pods interface {
	// Shows tells that a pod shows containerID as the current instance of one of its containers.
	Shows(containerID string) bool
	// WatchedWhole tells that the receiver watched the whole life of the container name of the
	// pod the runtime knows as podUID (its pod was created while the receiver watched): every
	// instance of it started while the receiver watched.
	WatchedWhole(podUID, name string) bool
}

// Tracker holds the counters as last read, by container ID, and the kills not yet handed on.
type Tracker struct {
	counters map[string]*counter
	// instances is, by container, how many counters of its instances are held.
	instances map[container]int
	// primed tells that one complete reading, of this run or restored, exists.
	primed bool
	kills  map[container]waiting
	// scrape is the number of the latest reading.
	scrape uint64
	// fresh are the counters read for the first time in the reading under way.
	fresh []*counter
}

// New returns a tracker that has read nothing.
func New() *Tracker {
	return &Tracker{counters: map[string]*counter{}, instances: map[container]int{}, kills: map[container]waiting{}}
}

// Read takes the counters of the scrape numbered scrape and adds each container's kills since
// the previous reading to those not yet handed on. complete tells that the reading holds every
// container instance there is; one that is not (the cgroup source before the pod list arrived)
// primes nothing. pods is what the pod list shows, nil before it arrived. It tells whether the
// counters Save returns changed.
//
// A counter read for the first time is a baseline, unless a complete reading came before and its
// instance is known to have started since: a counter of another instance of its container is held
// (read before, or restored: the instance started after that one was read), or the receiver
// watched its container's whole life. Then all its kills are new. An instance that missed the
// first complete reading (left out of the kubelet's answer, or its static pod without a mirror
// pod, so that its cgroup was not read) may have run long before: its kills until its first
// reading are not counted.
//
// A counter not read again is forgotten once its instance is gone: after keepScrapes scrapes
// without a reading when no pod shows its instance, never while one does; before the pod list
// arrived, after keepUnlisted scrapes.
func (t *Tracker) Read(counters []kubelet.OOMCounter, scrape uint64, complete bool, pods Pods) (changed bool) {
	t.scrape = scrape
	if complete && !t.primed {
		// Saved even without counters: a restart with storage is primed.
		changed = true
	}
	for _, c := range counters {
		prev := t.counters[c.ContainerID]
		var n uint64
		switch {
		case prev == nil:
			k := container{c.PodUID, c.Container}
			if t.primed && (t.instances[k] > 0 || pods != nil && pods.WatchedWhole(c.PodUID, c.Container)) {
				n = c.Value
			}
			prev = &counter{PodUID: c.PodUID, Container: c.Container}
			t.counters[c.ContainerID] = prev
			t.fresh = append(t.fresh, prev)
			changed = true
		case c.Value >= prev.Value:
			n = c.Value - prev.Value
		default:
			// The kubelet restarted and its cAdvisor counts again from zero.
			n = c.Value
		}
		if c.GroupKills > prev.GroupKills {
			// The OOM killer killed all the instance's processes at once (cgroup v2,
			// memory.oom.group): the container ended, one container OOM kill that its status
			// shows. Its growth since the previous reading is that kill, no process kill.
			n = 0
		}
		if c.Value != prev.Value || c.GroupKills != prev.GroupKills {
			changed = true
		}
		prev.Value, prev.GroupKills, prev.scrape = c.Value, c.GroupKills, scrape
		if credit := min(n, prev.Credit); credit > 0 {
			n -= credit
			prev.Credit -= credit
			changed = true
		}
		if n > 0 {
			t.add(container{c.PodUID, c.Container}, c.ContainerID, int64(min(n, 1<<62)))
		}
	}
	// Counted after the reading: two instances of a container both read for the first time
	// are both baselines.
	for _, c := range t.fresh {
		t.instances[container{c.PodUID, c.Container}]++
	}
	clear(t.fresh)
	t.fresh = t.fresh[:0]
	if t.prune(scrape, pods) {
		changed = true
	}
	t.primed = t.primed || complete
	return changed
}

// prune forgets the counters of instances gone (see Read).
func (t *Tracker) prune(scrape uint64, pods Pods) (changed bool) {
	for id, c := range t.counters {
		unread := scrape - c.scrape
		if pods == nil && unread > keepUnlisted || pods != nil && unread > keepScrapes && !pods.Shows(id) {
			t.forget(id, c)
			changed = true
		}
	}
	return changed
}

func (t *Tracker) forget(id string, c *counter) {
	delete(t.counters, id)
	k := container{c.PodUID, c.Container}
	if t.instances[k]--; t.instances[k] <= 0 {
		delete(t.instances, k)
	}
}

// add adds n kills of instance containerID to the container's kills not yet handed on.
func (t *Tracker) add(k container, containerID string, n int64) {
	w, ok := t.kills[k]
	if !ok {
		w.since = t.scrape
	}
	w.N += n
	w.ContainerID = containerID
	t.kills[k] = w
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
		t.instances[container{podUID, name}]++
	}
	if c.Absorbed {
		return false
	}
	c.Absorbed = true
	if c.Value > 0 {
		return true
	}
	c.Credit++
	t.add(container{podUID, name}, containerID, 1)
	return true
}

// Take returns the kills of the container name of pod podUID not yet handed on, and hands them
// on: a static pod whose mirror pod was deleted and created again since the
// previous scrape shows its containers under both mirror pods, and their kills go out once.
func (t *Tracker) Take(podUID, name string) Kills {
	k := container{podUID, name}
	w := t.kills[k]
	delete(t.kills, k)
	return w.Kills
}

// Handed tells that the scrape handed on the kills it took. The kills of containers no pod
// showed wait for one that does (a slow pod list, a static pod's mirror pod created again), up to
// waitScrapes scrapes.
func (t *Tracker) Handed() {
	for k, w := range t.kills {
		if t.scrape-w.since >= waitScrapes {
			delete(t.kills, k)
		}
	}
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
	clear(t.instances)
	for _, c := range restored {
		t.instances[container{c.PodUID, c.Container}]++
	}
	t.primed = true
	return nil
}
