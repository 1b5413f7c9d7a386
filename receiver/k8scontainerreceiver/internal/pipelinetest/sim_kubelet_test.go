// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
)

// ---- the node -------------------------------------------------------------------------------

type simPhase int

const (
	// simWaiting: no container of this epoch exists yet.
	simWaiting simPhase = iota
	simRunning
	simTerminated
	// simBackOff: the kubelet moved the dead container's state to lastState and keeps its
	// restart count and container ID.
	simBackOff
)

// simInstance is one run of a container: instance index of a restart-count epoch (a node reboot
// starts a new epoch at index 0).
type simInstance struct {
	epoch    int
	index    int64
	id       string
	started  int
	ended    bool
	reason   string
	endStep  int
	vanished bool // the node rebooted or the pod was deleted under it: no termination shows
}

func (i *simInstance) oom() bool { return i.ended && i.reason == "OOMKilled" }

func (i *simInstance) String() string { return fmt.Sprintf("e%d#%d", i.epoch, i.index) }

func (i *simInstance) terminated() *corev1.ContainerStateTerminated {
	exit := int32(0)
	switch i.reason {
	case "OOMKilled":
		exit = 137
	case "Error":
		exit = 1
	}
	return &corev1.ContainerStateTerminated{
		Reason:      i.reason,
		ExitCode:    exit,
		StartedAt:   metav1.NewTime(podtest.T0.Add(time.Duration(i.started) * time.Second)),
		FinishedAt:  metav1.NewTime(podtest.T0.Add(time.Duration(i.endStep) * time.Second)),
		ContainerID: i.id,
	}
}

type simContainer struct {
	pod   *simPod
	name  string
	init  bool
	epoch int
	phase simPhase
	rc    int32
	// cur is the newest instance of the epoch, nil while simWaiting; prev the one before it.
	cur, prev *simInstance
	// final: the restart policy keeps it as it is.
	final bool
	all   []*simInstance
}

func (c *simContainer) key() string { return string(c.pod.uid) + "/" + c.name }

// status is the container status the kubelet writes, and the instances whose termination it shows.
func (c *simContainer) status() (corev1.ContainerStatus, []*simInstance) {
	s := corev1.ContainerStatus{Name: c.name, RestartCount: c.rc}
	var shown []*simInstance
	last := func(i *simInstance) {
		if i != nil {
			s.LastTerminationState.Terminated = i.terminated()
			shown = append(shown, i)
		}
	}
	switch c.phase {
	case simWaiting:
		reason := "ContainerCreating"
		if !c.init && c.pod.init != nil && !c.pod.initDone {
			reason = "PodInitializing"
		}
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
	case simRunning:
		s.ContainerID = c.cur.id
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(podtest.T0.Add(time.Duration(c.cur.started) * time.Second))}
		last(c.prev)
	case simTerminated:
		s.ContainerID = c.cur.id
		s.State.Terminated = c.cur.terminated()
		shown = append(shown, c.cur)
		last(c.prev)
	case simBackOff:
		s.ContainerID = c.cur.id
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
		last(c.cur)
	}
	return s, shown
}

func (c *simContainer) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s rc=%d", c.name, c.rc)
	switch c.phase {
	case simWaiting:
		b.WriteString(" waiting")
	case simRunning:
		fmt.Fprintf(&b, " running %s", c.cur)
	case simTerminated:
		fmt.Fprintf(&b, " terminated %s %s", c.cur, c.cur.reason)
	case simBackOff:
		fmt.Fprintf(&b, " back-off %s %s", c.cur, c.cur.reason)
	}
	return b.String()
}

type simPod struct {
	name       string
	uid        types.UID
	policy     corev1.RestartPolicy
	init       *simContainer
	containers []*simContainer
	initDone   bool
	failed     bool
	deleted    bool
	// dirty: changed since the kubelet last wrote the status.
	dirty bool
}

func (p *simPod) all() []*simContainer {
	if p.init == nil {
		return p.containers
	}
	return append([]*simContainer{p.init}, p.containers...)
}

// object is the pod as the API server holds it: without statuses until the kubelet wrote one.
func (p *simPod) object(withStatus bool) (*corev1.Pod, map[string]simView) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: podtest.Namespace, Name: p.name, UID: p.uid},
		Spec:       corev1.PodSpec{NodeName: podtest.Node, RestartPolicy: p.policy},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	res := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}
	if p.init != nil {
		pod.Spec.InitContainers = []corev1.Container{{Name: p.init.name, Resources: res}}
	}
	for _, c := range p.containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c.name, Resources: res})
	}
	views := map[string]simView{}
	if !withStatus {
		return pod, views
	}
	pod.Status.Phase = corev1.PodRunning
	if p.failed {
		pod.Status.Phase = corev1.PodFailed
	}
	for _, c := range p.all() {
		s, shown := c.status()
		views[c.name] = simView{epoch: c.epoch, shown: shown}
		if c.init {
			pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, s)
		} else {
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, s)
		}
	}
	return pod, views
}

// simView is what one written status shows of a container.
type simView struct {
	epoch int
	shown []*simInstance
}

// apiEntry is a pod as the API server holds it.
type apiEntry struct {
	pod   *corev1.Pod
	sp    *simPod
	wrote int // the step of the kubelet's latest status write, -1 before the first
	views map[string]simView
}

func (s *simulation) createPod(name string, like *simPod) {
	s.incarnated++
	p := &simPod{name: name, uid: types.UID(fmt.Sprintf("uid-%s-%d", name, s.incarnated)), dirty: true}
	if like == nil {
		switch r := s.rng.IntN(20); {
		case r < 12:
			p.policy = corev1.RestartPolicyAlways
		case r < 15:
			p.policy = corev1.RestartPolicyOnFailure
		default:
			p.policy = corev1.RestartPolicyNever
		}
		if s.rng.IntN(3) == 0 {
			p.init = &simContainer{name: "init", init: true}
		}
		for i := range 1 + s.rng.IntN(2) {
			p.containers = append(p.containers, &simContainer{name: fmt.Sprintf("c%d", i)})
		}
	} else {
		p.policy = like.policy
		if like.init != nil {
			p.init = &simContainer{name: like.init.name, init: true}
		}
		for _, c := range like.containers {
			p.containers = append(p.containers, &simContainer{name: c.name})
		}
	}
	for _, c := range p.all() {
		c.pod = p
		s.containers[c.key()] = c
		if s.inLineage != nil {
			s.inLineage[c.key()] = true
		}
	}
	slot := slices.IndexFunc(s.pods, func(q *simPod) bool { return q.name == name })
	if slot < 0 {
		s.pods = append(s.pods, p)
	} else {
		s.pods[slot] = p
	}
	obj, views := p.object(false)
	e := &apiEntry{pod: obj, sp: p, wrote: -1, views: views}
	s.api[name] = e
	s.logf("%s created as %s (%s, init=%v, %d containers)", name, p.uid, p.policy, p.init != nil, len(p.containers))
	s.apiWrite(watch.Added, e)
}

// lifecycle moves one container on, and the kubelet writes the status or merges the change
// into a later write.
func (s *simulation) lifecycle() {
	type move struct {
		p *simPod
		c *simContainer
	}
	var moves []move
	for _, p := range s.pods {
		for _, c := range p.all() {
			if s.canMove(p, c) {
				moves = append(moves, move{p, c})
			}
		}
	}
	if len(moves) == 0 {
		return
	}
	m := moves[s.rng.IntN(len(moves))]
	s.move(m.p, m.c)
	m.p.dirty = true
	if s.reliable || s.rng.IntN(10) < 6 {
		s.kubeletWrite(m.p)
	}
}

func (s *simulation) canMove(p *simPod, c *simContainer) bool {
	switch {
	case c.final || p.failed:
		return false
	case c.phase == simWaiting:
		return c.init || p.init == nil || p.initDone
	}
	return true
}

func (s *simulation) move(p *simPod, c *simContainer) {
	switch c.phase {
	case simWaiting:
		s.run(c)
	case simRunning:
		reason := "Completed"
		switch r := s.rng.IntN(20); {
		case r < 9:
			reason = "OOMKilled"
		case r < 16:
			reason = "Error"
		}
		c.cur.ended, c.cur.reason, c.cur.endStep = true, reason, s.step
		c.phase = simTerminated
		switch {
		case c.init && reason == "Completed":
			c.final, p.initDone = true, true
		case c.init && p.policy == corev1.RestartPolicyNever:
			c.final, p.failed = true, true
		case p.policy == corev1.RestartPolicyNever,
			p.policy == corev1.RestartPolicyOnFailure && reason == "Completed":
			c.final = true
		}
		s.logf("%s/%s: %s ended %s", p.name, c.name, c.cur, reason)
	case simTerminated:
		if s.rng.IntN(2) == 0 {
			c.phase = simBackOff
			s.logf("%s/%s: %s in back-off", p.name, c.name, c.cur)
			return
		}
		s.run(c)
	case simBackOff:
		s.run(c)
	}
}

// run starts the next instance of c.
func (s *simulation) run(c *simContainer) {
	if c.cur != nil {
		c.prev = c.cur
		c.rc++
	}
	c.cur = &simInstance{
		epoch:   c.epoch,
		index:   int64(c.rc),
		id:      fmt.Sprintf("containerd://%s-%s-e%d-%d", c.pod.uid, c.name, c.epoch, c.rc),
		started: s.step,
	}
	c.all = append(c.all, c.cur)
	c.phase = simRunning
	s.logf("%s/%s: %s runs", c.pod.name, c.name, c.cur)
}

// reboot is a node reboot as this pod sees it: the same pod, new containers, restart counts
// from 0; what ran vanishes without a termination status.
func (s *simulation) reboot(p *simPod) {
	for _, c := range p.all() {
		if c.phase == simRunning {
			c.cur.vanished = true
		}
		c.epoch++
		c.rc, c.cur, c.prev, c.final, c.phase = 0, nil, nil, false, simWaiting
	}
	p.initDone = false
	p.dirty = true
	s.logf("%s: the node reboots, restart counts start again at 0", p.name)
	if s.reliable || s.rng.IntN(2) == 0 {
		s.kubeletWrite(p)
	}
}

// recreate deletes the pod in slot and creates it again under the same name, with a new UID.
func (s *simulation) recreate(slot int) {
	old := s.pods[slot]
	old.deleted = true
	for _, c := range old.all() {
		if c.phase == simRunning {
			c.cur.vanished = true
		}
	}
	e := s.api[old.name]
	delete(s.api, old.name)
	s.logf("%s (%s) deleted", old.name, old.uid)
	s.apiWrite(watch.Deleted, e)
	s.createPod(old.name, old)
}

func (s *simulation) kubeletWrite(p *simPod) {
	obj, views := p.object(true)
	e := &apiEntry{pod: obj, sp: p, wrote: s.step, views: views}
	s.api[p.name] = e
	p.dirty = false
	parts := make([]string, 0, len(p.containers)+1)
	for _, c := range p.all() {
		parts = append(parts, c.describe())
	}
	s.logf("kubelet writes %s: %s", p.name, strings.Join(parts, "; "))
	s.apiWrite(watch.Modified, e)
}
