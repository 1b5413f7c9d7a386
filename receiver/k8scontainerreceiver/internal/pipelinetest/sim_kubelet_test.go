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
	// simLost: the runtime has no container of it (the node rebooted, or the runtime lost its
	// state); the kubelet writes its default status, frozen, until the next container starts.
	simLost
	// simEnded: the status manager ended the pod (TerminatePod); the status is frozen for good.
	simEnded
)

// simInstance is one run of a container: instance index of a restart-count epoch (a node reboot
// that wiped the container logs starts a new epoch at index 0).
type simInstance struct {
	epoch   int
	index   int64
	id      string
	started int
	ended   bool
	reason  string
	exit    int32
	endStep int
	// vanished: the runtime lost it or its pod was deleted under it; no status shows its end.
	vanished bool
	// skew is how far the node's clock is ahead of the collector's.
	skew time.Duration
}

// endSecond is the second of the instance's end as its status shows it, in steps.
func (i *simInstance) endSecond() int {
	return int(i.at(i.endStep).Sub(podtest.T0) / time.Second)
}

// at is the time of step on the node's clock, to the second as the API server keeps it.
func (i *simInstance) at(step int) metav1.Time {
	return metav1.NewTime(podtest.T0.Add(time.Duration(step)*time.Second + i.skew).Truncate(time.Second))
}

// oom tells that the OOM killer ended the instance: a kill of another process in it, after
// which PID 1 exited by itself, is none.
func (i *simInstance) oom() bool { return i.ended && i.reason == "OOMKilled" && i.exit == 137 }

func (i *simInstance) String() string { return fmt.Sprintf("e%d#%d", i.epoch, i.index) }

func (i *simInstance) terminated() *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		Reason:      i.reason,
		ExitCode:    i.exit,
		StartedAt:   i.at(i.started),
		FinishedAt:  i.at(i.endStep),
		ContainerID: i.id,
	}
}

// simState is the state a container status shows.
type simState int

const (
	stateWaiting simState = iota
	stateBackOff
	stateRunning
	stateTerminated
	// stateMadeUp is the status manager's end of a container it did not see end
	// (ContainerStatusUnknown, exit code 137, no container ID, no times).
	stateMadeUp
)

// simStatus is a container status as the kubelet writes it, told by the instances it names.
type simStatus struct {
	// epoch is the restart-count epoch of rc: a status names no instance of an epoch whose
	// first container it has not seen.
	epoch int
	rc    int32
	state simState
	// inst is the instance the state is about; it carries the status' container ID (which a
	// made-up end keeps).
	inst *simInstance
	// last is the instance lastState shows the end of; lastUnknown: lastState is the kubelet's
	// made-up end (ContainerStatusUnknown) of a running instance it lost.
	last        *simInstance
	lastUnknown bool
}

// lostStatus is the kubelet's status for a container its runtime has no container of
// (kubelet_pods.go, convertToAPIContainerStatuses): the default waiting state without a
// container ID, with the restart count and lastState of old, the status before (found: there
// was one). A terminated old status stays as it was. A running one without lastState gets a
// made-up end of the lost instance and one more restart.
func lostStatus(old simStatus, found bool, epoch int) simStatus {
	switch {
	case !found:
		return simStatus{epoch: epoch}
	case old.state == stateTerminated, old.state == stateMadeUp:
		return old
	}
	st := simStatus{epoch: old.epoch, rc: old.rc, last: old.last, lastUnknown: old.lastUnknown}
	if old.state == stateRunning && old.last == nil && !old.lastUnknown {
		st.lastUnknown = true
		st.rc++
	}
	return st
}

// container is st as the API shows it for container name, and the instances whose termination
// it shows; waiting is the reason of a waiting state.
func (st simStatus) container(name, waiting string) (corev1.ContainerStatus, []*simInstance) {
	s := corev1.ContainerStatus{Name: name, RestartCount: st.rc}
	var shown []*simInstance
	switch {
	case st.last != nil:
		s.LastTerminationState.Terminated = st.last.terminated()
		shown = append(shown, st.last)
	case st.lastUnknown:
		s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
			Reason: "ContainerStatusUnknown", ExitCode: 137, Message: "The container could not be located when the pod was deleted.  The container used to be Running",
		}
	}
	if st.inst != nil {
		s.ContainerID = st.inst.id
	}
	switch st.state {
	case stateWaiting:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: waiting}
	case stateBackOff:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
	case stateRunning:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: st.inst.at(st.inst.started)}
	case stateTerminated:
		s.State.Terminated = st.inst.terminated()
		if st.inst != st.last {
			shown = append(shown, st.inst)
		}
	case stateMadeUp:
		s.State.Terminated = &corev1.ContainerStateTerminated{
			Reason: "ContainerStatusUnknown", ExitCode: 137, Message: "The container could not be located when the pod was terminated",
		}
	}
	return s, shown
}

// simEnd is a termination as a receiver names it: the instance index, and the instance that
// ended, nil for an end the kubelet made up (no container ID, no times: its identity is the
// index alone).
type simEnd struct {
	index int64
	inst  *simInstance
}

// ends are the terminations st shows as a receiver names them: state.terminated ended instance
// rc; lastState instance rc-1, but rc in the back-off form, where the status' container ID is
// lastState's.
// key is how a receiver knows e again: by its container ID, a made-up end by its instance.
func (e simEnd) key() simEnd {
	if e.inst != nil {
		return simEnd{inst: e.inst}
	}
	return e
}

func (st simStatus) ends() []simEnd {
	var out []simEnd
	switch {
	case st.last != nil && st.inst == st.last:
		out = append(out, simEnd{index: int64(st.rc), inst: st.last})
	case st.last != nil, st.lastUnknown:
		out = append(out, simEnd{index: max(int64(st.rc)-1, 0), inst: st.last})
	}
	switch {
	case st.state == stateTerminated:
		out = append(out, simEnd{index: int64(st.rc), inst: st.inst})
	case st.state == stateMadeUp && (st.inst == nil || st.inst != st.last):
		// Made up over anything but the back-off form: an end of instance rc, outcome unknown.
		out = append(out, simEnd{index: int64(st.rc)})
	}
	return out
}

func (st simStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rc=%d", st.rc)
	switch st.state {
	case stateWaiting:
		b.WriteString(" waiting")
	case stateBackOff:
		fmt.Fprintf(&b, " back-off %s %s", st.inst, st.inst.reason)
	case stateRunning:
		fmt.Fprintf(&b, " running %s", st.inst)
	case stateTerminated:
		fmt.Fprintf(&b, " terminated %s %s", st.inst, st.inst.reason)
	case stateMadeUp:
		b.WriteString(" terminated, made up")
		if st.inst != nil {
			fmt.Fprintf(&b, " over %s", st.inst)
		}
	}
	switch {
	case st.last != nil && st.state != stateBackOff:
		fmt.Fprintf(&b, ", last %s", st.last)
	case st.lastUnknown:
		b.WriteString(", last unknown")
	}
	return b.String()
}

type simContainer struct {
	pod   *simPod
	name  string
	init  bool
	epoch int
	phase simPhase
	// cur is the newest instance that started, nil while none has; prev the one before it in
	// the same runtime, which lastState shows.
	cur, prev *simInstance
	// frozen is the status while simLost (the kubelet's default status) or simEnded; wiped: the
	// container logs went with the runtime's state, so the next container counts restarts from 0.
	frozen simStatus
	wiped  bool
	// final: the restart policy keeps it as it is.
	final bool
	all   []*simInstance
}

// instance is c's instance index of epoch, nil if it never ran.
func (c *simContainer) instance(epoch int, index int64) *simInstance {
	for _, i := range c.all {
		if i.epoch == epoch && i.index == index {
			return i
		}
	}
	return nil
}

func (c *simContainer) key() string { return string(c.pod.uid) + "/" + c.name }

// status is the container's status as the kubelet would write it now.
func (c *simContainer) status() simStatus {
	st := simStatus{epoch: c.epoch, inst: c.cur, last: c.prev}
	if c.cur != nil {
		st.rc = int32(c.cur.index)
	}
	switch c.phase {
	case simWaiting:
		st.inst, st.last = nil, nil
	case simRunning:
		st.state = stateRunning
	case simTerminated:
		st.state = stateTerminated
	case simBackOff:
		st.state, st.last = stateBackOff, c.cur
	case simLost, simEnded:
		return c.frozen
	}
	return st
}

func (c *simContainer) describe() string {
	switch c.phase {
	case simLost:
		return fmt.Sprintf("%s lost, default status %s", c.name, c.frozen)
	case simEnded:
		return fmt.Sprintf("%s ended by the kubelet, %s", c.name, c.frozen)
	}
	return c.name + " " + c.status().String()
}

type simPod struct {
	name string
	uid  types.UID
	// static is, for a static pod, its own UID (the hash of its manifest): the UID the kubelet
	// and the runtime know it by. uid is then its mirror pod's, which the API server knows.
	static     types.UID
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
	if p.static != "" {
		pod.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: string(p.static)}
	}
	views := map[string]simView{}
	if !withStatus {
		return pod, views
	}
	pod.Status.Phase = corev1.PodRunning
	if p.failed {
		pod.Status.Phase = corev1.PodFailed
	}
	waiting := "ContainerCreating"
	if p.init != nil {
		waiting = "PodInitializing"
	}
	for _, c := range p.all() {
		st := c.status()
		s, shown := st.container(c.name, waiting)
		views[c.name] = simView{status: st, shown: shown}
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
	status simStatus
	shown  []*simInstance
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
		if s.rng.IntN(4) == 0 {
			p.static = types.UID(fmt.Sprintf("static-%s", name))
		}
	} else {
		p.policy, p.static = like.policy, like.static
		if like.init != nil {
			p.init = &simContainer{name: like.init.name, init: true}
		}
		for _, c := range like.containers {
			p.containers = append(p.containers, &simContainer{name: c.name})
		}
	}
	s.place(p)
	s.logf("%s created as %s (%s, init=%v, %d containers, static=%v)", name, p.uid, p.policy, p.init != nil, len(p.containers), p.static != "")
	s.apiWrite(watch.Added, s.api[name])
}

// place puts pod p on the node and into the API server, without a status yet.
func (s *simulation) place(p *simPod) {
	for _, c := range p.all() {
		c.pod = p
		s.containers[c.key()] = c
		if p.static != "" {
			s.mirrorKeys[c.key()] = true
		}
		if s.inLineage != nil {
			s.inLineage[c.key()] = true
		}
	}
	slot := slices.IndexFunc(s.pods, func(q *simPod) bool { return q.name == p.name })
	if slot < 0 {
		s.pods = append(s.pods, p)
	} else {
		s.pods[slot] = p
	}
	obj, views := p.object(false)
	s.api[p.name] = &apiEntry{pod: obj, sp: p, wrote: -1, views: views}
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
	case c.phase == simWaiting, c.phase == simLost:
		return c.init || p.init == nil || p.initDone
	}
	return true
}

func (s *simulation) move(p *simPod, c *simContainer) {
	switch c.phase {
	case simWaiting, simLost:
		s.run(c)
	case simRunning:
		reason, exit := "Completed", int32(0)
		switch r := s.rng.IntN(20); {
		case r < 8:
			reason, exit = "OOMKilled", 137
		case r < 9:
			// The OOM killer killed a child; PID 1 then exited by itself, and containerd marks
			// the container OOMKilled all the same.
			reason, exit = "OOMKilled", int32(s.rng.IntN(2))
			s.hit(formChildKill)
		case r < 16:
			reason, exit = "Error", 1
		}
		c.cur.ended, c.cur.reason, c.cur.exit, c.cur.endStep = true, reason, exit, s.step
		switch {
		case s.skew < 0:
			s.hit(formClockBehind)
		case s.skew > 0:
			s.hit(formClockAhead)
		}
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

// run starts the next container of c. After the runtime lost c's containers, the runtime reads
// the restart count back from the container log folder: the next after the newest instance
// that started, or 0 if the logs went too (a new epoch); no lastState, the runtime has no
// earlier container.
func (s *simulation) run(c *simContainer) {
	index := int64(0)
	switch {
	case c.phase == simLost && c.wiped && c.cur != nil:
		c.epoch++
		c.prev = nil
		s.hit(formLogsWiped)
	case c.phase == simLost:
		if c.cur != nil {
			index = c.cur.index + 1
			s.hit(formLogsKept)
		}
		c.prev = nil
	case c.cur != nil:
		c.prev = c.cur
		index = c.cur.index + 1
	}
	c.cur = &simInstance{
		epoch:   c.epoch,
		index:   index,
		id:      fmt.Sprintf("containerd://%s-%s-e%d-%d", c.pod.uid, c.name, c.epoch, index),
		started: s.step,
		skew:    s.skew,
	}
	c.all = append(c.all, c.cur)
	c.phase = simRunning
	s.logf("%s/%s: %s runs", c.pod.name, c.name, c.cur)
}

// reboot is a node reboot as this pod sees it: the runtime lost every container, the kubelet
// restarted and writes its default status from the status the API server holds (its own cache
// went with it); then new containers start, with restart counts from 0 if the container logs
// went too, else going on.
func (s *simulation) reboot(p *simPod) {
	wiped := s.rng.IntN(2) == 0
	written := s.api[p.name].views
	for _, c := range p.all() {
		v, found := written[c.name]
		s.lose(c, v.status, found, wiped)
	}
	p.initDone = false
	p.dirty = true
	if wiped {
		s.logf("%s: the node reboots and the container logs are gone: restart counts start again at 0", p.name)
	} else {
		s.logf("%s: the node reboots, the container logs stay: restart counts go on", p.name)
	}
	if s.reliable || s.rng.IntN(2) == 0 {
		s.kubeletWrite(p)
	}
}

// runtimeLost is the runtime losing this pod's containers while the kubelet runs: the kubelet
// writes its default status from the status it last made, and the count goes on.
func (s *simulation) runtimeLost(p *simPod) {
	for _, c := range p.all() {
		s.lose(c, c.status(), true, false)
	}
	p.initDone = false
	p.dirty = true
	s.logf("%s: the runtime lost its containers", p.name)
	s.hit(formRuntimeLost)
	if s.reliable || s.rng.IntN(2) == 0 {
		s.kubeletWrite(p)
	}
}

// lose makes c a container the runtime has no container of; old is the status the kubelet
// starts from.
func (s *simulation) lose(c *simContainer, old simStatus, found, wiped bool) {
	if c.phase == simRunning {
		s.vanish(c.cur)
	}
	c.frozen = lostStatus(old, found, c.epoch)
	if c.frozen.lastUnknown && !old.lastUnknown {
		s.hit(formLostRunningAlone)
	}
	if c.phase != simLost {
		c.wiped = false
	}
	// Logs once gone stay gone, whatever the runtime loses again before the next container.
	c.wiped = c.wiped || wiped
	c.phase, c.final = simLost, false
}

// terminatePod is the status manager ending the pod (eviction, activeDeadlineSeconds, node
// shutdown: TerminatePod in status_manager.go): every state not terminated becomes a made-up
// end that keeps lastState, the restart count and the container ID. A running instance ended
// so, its outcome unknown: sometimes an OOM kill nobody saw. A container in back-off had
// ended already.
func (s *simulation) terminatePod(p *simPod) {
	for _, c := range p.all() {
		st := c.status()
		switch {
		case st.state == stateTerminated, st.state == stateMadeUp:
		case c.phase == simRunning:
			c.cur.ended, c.cur.endStep, c.cur.reason, c.cur.exit = true, s.step, "Error", 137
			if s.rng.IntN(3) == 0 {
				c.cur.reason = "OOMKilled"
				s.hit(formEndedRunningOOM)
			}
			s.hit(formEndedRunning)
			st.state = stateMadeUp
		case c.phase == simBackOff:
			s.hit(formEndedBackOff)
			st.state = stateMadeUp
		default:
			s.hit(formEndedWaiting)
			st.state = stateMadeUp
		}
		c.frozen, c.phase, c.final = st, simEnded, true
	}
	p.failed, p.dirty = true, true
	s.logf("%s: the status manager ends the pod", p.name)
	if s.reliable || s.rng.IntN(2) == 0 {
		s.kubeletWrite(p)
	}
}

// vanish ends a running instance that no status will show the end of.
func (s *simulation) vanish(i *simInstance) {
	i.ended, i.vanished, i.endStep = true, true, s.step
}

// recreate deletes the pod in slot and creates it again under the same name, with a new UID.
// A static pod's mirror pod is deleted instead, and the kubelet creates it again.
func (s *simulation) recreate(slot int) {
	old := s.pods[slot]
	if old.static != "" {
		s.recreateMirror(old)
		return
	}
	old.deleted = true
	for _, c := range old.all() {
		if c.phase == simRunning {
			s.vanish(c.cur)
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

// recreateMirror is a static pod's mirror pod deleted through the API server (or by the taint
// manager): the static pod runs on untouched, and the kubelet creates its mirror pod again,
// with a new UID, then writes the static pod's status it holds (old restart counts and ends).
func (s *simulation) recreateMirror(old *simPod) {
	e := s.api[old.name]
	delete(s.api, old.name)
	s.logf("mirror pod %s (%s) deleted", old.name, old.uid)
	s.apiWrite(watch.Deleted, e)
	for _, c := range old.all() {
		s.until[c.key()] = s.step
	}
	s.incarnated++
	p := *old
	p.uid = types.UID(fmt.Sprintf("uid-%s-%d", old.name, s.incarnated))
	p.dirty = true
	s.place(&p)
	s.logf("the kubelet creates mirror pod %s again as %s", p.name, p.uid)
	s.hit(formMirrorRecreated)
	s.apiWrite(watch.Added, s.api[p.name])
	if s.reliable || s.rng.IntN(10) < 6 {
		s.kubeletWrite(&p)
	}
}
