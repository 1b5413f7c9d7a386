// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package cgroupoom

import (
	"bytes"
	"errors"
	"fmt"
)

// Which memory limit an OOM kill hit is told by the cgroup levels above its victim, whose
// cgroups outlive a killed container's: the pod's cgroup, and the kubepods cgroup with its QoS
// folders, whose limit is the node's allocatable memory for pods. The kernel counts, in the
// cgroup whose limit it hit:
//   - cgroup v2: "oom" in memory.events.local, each time that cgroup's limit left an allocation
//     nothing to reclaim and the OOM killer was called for it (mm/memcontrol.c, MEMCG_OOM).
//     memory.events counts the same for the cgroup and everything below it, so memory.events
//     minus memory.events.local is the limits hit below it: in a pod's cgroup, its containers'.
//   - cgroup v1: memory.failcnt, each time the cgroup's usage reached its limit (the page
//     counter that refused a charge). It also counts limits that reclaim then made room under,
//     and v1 has no count below a cgroup: a container's failcnt goes with its cgroup.

// Limit-hit counter files.
const (
	v1FailcntFile     = "memory.failcnt"
	v2EventsLocalFile = "memory.events.local"
)

// LimitHits is how many times a cgroup's memory limits were hit, as the kernel counts them.
type LimitHits struct {
	// Own counts the cgroup's own limit: "oom" of memory.events.local (v2), memory.failcnt (v1).
	Own uint64
	// Below counts (v2 only) the limits of the cgroups below it: "oom" of memory.events minus
	// that of memory.events.local.
	Below uint64
	// Reached counts the times the cgroup's usage reached its own limit, also those that
	// reclaim then resolved: "max" of memory.events.local (v2), memory.failcnt (v1, as Own).
	Reached uint64
}

// Limits is one reading of the limit hits above the containers of a node.
type Limits struct {
	// Pods are the limit hits of each pod's cgroup, by pod UID; a pod whose cgroup is not found
	// is left out.
	Pods map[string]LimitHits
	// Allocatable is the sum of the Own hits of the kubepods cgroups and their QoS folders: the
	// kubelet gives kubepods the node's allocatable memory as its limit (enforceNodeAllocatable
	// pods), and the QoS folders a limit of their own only with the QOSReserved feature.
	Allocatable uint64
	// V1 tells that the counts are cgroup v1's failcnt, which also counts hits that reclaim
	// resolved, and that Below is not known.
	V1 bool
}

// ReadLimits reads the limit hits of the cgroups of the pods with these UIDs and of the
// kubepods cgroups. A pod's cgroup is found as Read finds it; the pods that Read is not asked
// for are looked for again at the next ReadLimits (a few stat calls each). As with Read, a pod
// whose counters cannot be read is left out, and its error is part of the returned one.
func (r *Reader) ReadLimits(podUIDs []string) (Limits, error) {
	// A Read of its own: the kubepods cgroups are looked for at most once in it.
	r.gen++
	l := Limits{Pods: make(map[string]LimitHits, len(podUIDs)), V1: r.counterFile == v1CounterFile}
	var errs []error
	for _, uid := range podUIDs {
		if !validName(uid) {
			continue
		}
		p, err := r.findPod(uid)
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", uid, err))
			continue
		}
		if p == nil {
			continue
		}
		h, ok, err := r.readLimitHits(p.dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", uid, err))
			continue
		}
		if ok {
			l.Pods[uid] = h
		}
	}
	if len(r.kubepods) == 0 && r.walkedGen != r.gen {
		if err := r.walk(r.now()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, k := range r.kubepods {
		for _, parent := range k.parents() {
			h, _, err := r.readLimitHits(parent.dir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			l.Allocatable += h.Own
		}
	}
	return l, errors.Join(errs...)
}

// readLimitHits reads the limit hits of the cgroup at dir; ok is false when it is not there.
func (r *Reader) readLimitHits(dir string) (LimitHits, bool, error) {
	if r.counterFile == v1CounterFile {
		b, err := r.readCounterFile(dir + "/" + v1FailcntFile)
		if gone(err) {
			return LimitHits{}, false, nil
		}
		if err != nil {
			return LimitHits{}, false, err
		}
		n, err := parseDecimal(bytes.TrimSuffix(b, []byte("\n")))
		if err != nil {
			return LimitHits{}, false, fmt.Errorf("%s/%s %q: %w", dir, v1FailcntFile, b, err)
		}
		return LimitHits{Own: n, Reached: n}, true, nil
	}
	local, reached, ok, err := r.readOOM(dir + "/" + v2EventsLocalFile)
	if !ok || err != nil {
		return LimitHits{}, false, err
	}
	all, _, ok, err := r.readOOM(dir + "/" + v2CounterFile)
	if !ok || err != nil {
		return LimitHits{}, false, err
	}
	h := LimitHits{Own: local, Reached: reached}
	if all > local {
		h.Below = all - local
	}
	return h, true, nil
}

// readOOM reads "oom N" and "max M" of a memory.events or memory.events.local file; ok is false
// when the file is not there.
func (r *Reader) readOOM(path string) (oom, maxHits uint64, ok bool, err error) {
	b, err := r.readCounterFile(path)
	if gone(err) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	if oom, err = parseField(b, "oom"); err == nil {
		maxHits, err = parseField(b, "max")
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	return oom, maxHits, true, nil
}

// parseField returns N of the one "<key> N" line of a flat-keyed cgroup file.
func parseField(b []byte, key string) (uint64, error) {
	prefix := []byte(key + " ")
	var n uint64
	found := false
	for line := range bytes.Lines(b) {
		v, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\n")), prefix)
		if !ok {
			continue
		}
		if found {
			return 0, fmt.Errorf("two %s lines", key)
		}
		found = true
		var err error
		if n, err = parseDecimal(v); err != nil {
			return 0, fmt.Errorf("%s %q: %w", key, v, err)
		}
	}
	if !found {
		return 0, fmt.Errorf("no %s line", key)
	}
	return n, nil
}
