// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package oomscope tells which memory limit an OOM kill hit: the container's own, its pod's,
// the node's allocatable memory for pods, or none, the node itself having run out. It reads it
// from the kernel's counts of limit hits in the cgroups above the victim (cgroupoom.Limits),
// which the receiver takes at each scrape: the level whose count rose between the readings
// before and after the kill is the level whose limit was hit.
//
// The rules, for a kill of a container of pod P between two readings:
//   - the kubepods cgroups' hits rose: node_allocatable;
//   - P's own hits rose: pod when P has a memory limit of its own (pod-level resources); without
//     one, the kubelet made P's limit the sum of its containers' (plus the sandbox's few pages,
//     which is why the kernel may name the pod's cgroup for a one-container pod), so the limit
//     hit is the containers': container;
//   - (cgroup v2) the hits below P's cgroup rose: container;
//   - nothing rose: on cgroup v2, where every memory cgroup kill counts an oom at some level,
//     node; on cgroup v1, whose container counts go with the container's cgroup, nothing tells
//     a container's own limit from the node running out, and no scope is named. (The kubelet's
//     SystemOOM event does not tell either: it is recorded only for a victim in the root
//     cgroup, never for a container's process.)
//
// Several levels can rise in one interval; the outermost that rose is named, as a limit further
// out ends more than the one container. On cgroup v1 the counts are memory.failcnt, which also
// counts hits that reclaim resolved without a kill, so a level can rise without being the one
// that killed; docs/counting.md says so.
package oomscope

import (
	"strings"
	"time"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/cgroupoom"
)

// Scope is the level whose memory limit an OOM kill hit: the values of k8s.oom.scope.
type Scope string

// The scopes.
const (
	Container       Scope = "container"
	Pod             Scope = "pod"
	NodeAllocatable Scope = "node_allocatable"
	Node            Scope = "node"
)

// keep is how many readings a History holds: at the default 10 s interval, 80 s back, so that a
// kill the pod status shows a scrape or two late still finds the readings around it.
const keep = 8

// reading is one ReadLimits and when it was taken.
type reading struct {
	at     time.Time
	limits cgroupoom.Limits
}

// History holds the last readings of a node's limit hits; for one goroutine.
type History struct {
	readings [keep]reading
	// next is where the next reading goes; n how many there are.
	next, n int
}

// Add keeps a reading taken at at; readings are added in time order.
func (h *History) Add(at time.Time, l cgroupoom.Limits) {
	h.readings[h.next] = reading{at: at, limits: l}
	h.next = (h.next + 1) % keep
	h.n = min(h.n+1, keep)
}

// Kill says when a kill happened and what else is known of it.
type Kill struct {
	// PodUID is the UID of the victim's pod, as the cgroups know it (a static pod's own).
	PodUID string
	// After and Before bound the kill: it happened after the one and no later than the other. A
	// container's end is known to the second (truncated) and comes a moment after the kill, so
	// a container that ended at T was killed between T-1s and T+1s; the process kills of a
	// scrape happened between the reading of the scrape before and this one's.
	After, Before time.Time
	// PodLimit tells that the pod has a memory limit of its own (pod-level resources).
	PodLimit bool
}

// Scope returns the scope of a kill; false when the readings do not bound it (none taken before
// it, or none yet after it), do not show the pod in both, or, on cgroup v1, show no level's
// count rising.
func (h *History) Scope(k Kill) (Scope, bool) {
	before, after, ok := h.around(k.After, k.Before)
	if !ok {
		return "", false
	}
	pb, okb := before.limits.Pods[k.PodUID]
	pa, oka := after.limits.Pods[k.PodUID]
	if !okb || !oka {
		return "", false
	}
	switch {
	case after.limits.Allocatable > before.limits.Allocatable:
		return NodeAllocatable, true
	case pa.Own > pb.Own:
		return ofPod(k.PodLimit), true
	case pa.Below > pb.Below:
		return Container, true
	case after.limits.V1:
		return "", false
	default:
		return Node, true
	}
}

// ofPod is the scope of a kill at the limit of the pod's cgroup: the pod's own limit with
// pod-level resources; without them the kubelet made it the sum of the containers' limits, which
// is the containers' limit.
func ofPod(podLimit bool) Scope {
	if podLimit {
		return Pod
	}
	return Container
}

// OfReport is the scope the kernel's own report of a kill names: oomMemcg is the cgroup whose
// limit was hit ("" or global for a kill by the node running out), taskMemcg the victim's. The
// victim's cgroup is its container's, the one above it its pod's, any further up the kubepods
// cgroup or a QoS folder. False for an oomMemcg that is not above the victim.
func OfReport(oomMemcg, taskMemcg string, global, podLimit bool) (Scope, bool) {
	below, isAncestor := strings.CutPrefix(taskMemcg, oomMemcg+"/")
	switch {
	case global || oomMemcg == "":
		return Node, true
	case oomMemcg == taskMemcg:
		return Container, true
	case isAncestor && !strings.Contains(below, "/"):
		return ofPod(podLimit), true
	case isAncestor:
		return NodeAllocatable, true
	default:
		return "", false
	}
}

// around returns the newest reading taken no later than from and the oldest taken no earlier
// than to.
func (h *History) around(from, to time.Time) (before, after reading, ok bool) {
	var hasBefore, hasAfter bool
	for i := range h.n {
		r := h.readings[(h.next-h.n+i+keep)%keep]
		if !r.at.After(from) {
			before, hasBefore = r, true
		}
		if !hasAfter && !r.at.Before(to) {
			after, hasAfter = r, true
		}
	}
	return before, after, hasBefore && hasAfter
}
