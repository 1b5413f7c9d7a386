// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package termination reads container terminations out of a pod's container statuses and
// names the container instance each one ended.
//
// The kubelet shows at most two terminations per container: the current container's in
// state.terminated, which ended instance restartCount, and the previous container's in
// lastState.terminated, which ended instance restartCount-1. Between two restarts both are
// visible at once, and a termination moves from one field to the other when the container
// restarts, so one termination is identified by its Key, never by the field it is in.
//
// One form breaks the pattern: while a container waits in back-off, the kubelet moves the dead
// container's state.terminated into lastState.terminated and shows state.waiting, but keeps
// that container's restartCount and containerID (pkg/kubelet/kubelet_pods.go,
// convertToAPIContainerStatuses, the reasonCache branch). lastState then ended instance
// restartCount, not restartCount-1; the equal container IDs tell the form apart. When the
// status manager ends such a pod (eviction, activeDeadlineSeconds, node shutdown: TerminatePod
// in pkg/kubelet/status/status_manager.go), it replaces the waiting state by a made-up
// state.terminated (ContainerStatusUnknown, exit code 137, no container ID, no times) and keeps
// the rest: no instance ended there, the back-off form stands.
package termination

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

const (
	// ReasonOOMKilled is the reason the runtime gives to a container in which the OOM killer
	// killed a process.
	ReasonOOMKilled = "OOMKilled"
	// ReasonStatusUnknown is the reason the kubelet gives to a container it could no longer
	// find (the runtime lost it, or the pod was ended while the container was not running).
	ReasonStatusUnknown = "ContainerStatusUnknown"
	// ExitCodeKilled is the exit code of a main process that died of SIGKILL (128 + 9), as the
	// OOM killer kills.
	ExitCodeKilled = 137
)

// Termination is one ended container instance.
type Termination struct {
	// Instance is the restart index of the container instance that ended, 0-based.
	Instance    int64
	Reason      string
	ExitCode    int32
	FinishedAt  time.Time
	ContainerID string
	// StartedAt is when the instance started; zero if the status does not say.
	StartedAt time.Time
	// MaybeLater tells that the status cannot tell whether this ended Instance or Instance+1
	// (the kubelet's default status keeps lastState, not the container ID that tells the
	// back-off form).
	MaybeLater bool
}

// OOMKilled tells whether the OOM killer ended the instance: the runtime marked it OOMKilled
// and its main process died of SIGKILL. containerd marks a container OOMKilled when any process
// in its cgroup was OOM-killed, also when the main process then exited by itself.
func (t Termination) OOMKilled() bool {
	return t.Reason == ReasonOOMKilled && t.ExitCode == ExitCodeKilled
}

// ProcessOOMKilled tells that the runtime marked the instance OOMKilled but its main process
// exited by itself (an exit code other than 137): the OOM killer killed another process in it,
// which did not end the container.
func (t Termination) ProcessOOMKilled() bool {
	return t.Reason == ReasonOOMKilled && t.ExitCode != ExitCodeKilled
}

// OutcomeUnknown tells that the kubelet no longer knew how the instance ended.
func (t Termination) OutcomeUnknown() bool { return t.Reason == ReasonStatusUnknown }

// Key identifies a termination across updates, relists and the move from state.terminated
// to lastState.terminated.
type Key struct {
	// ContainerID of the terminated container; a new container gets a new ID.
	ContainerID string
	// Instance and FinishedAt identify a termination that has no container ID (the kubelet
	// reports some, such as ContainerStatusUnknown, without one). They are zero when
	// ContainerID is set, so the instance a termination was first attributed to cannot
	// split one termination into two.
	Instance   int64
	FinishedAt int64
}

// Key returns the identity of t.
func (t Termination) Key() Key {
	if t.ContainerID != "" {
		return Key{ContainerID: t.ContainerID}
	}
	return Key{Instance: t.Instance, FinishedAt: t.FinishedAt.UnixNano()}
}

// Before orders terminations oldest first: by instance, then by end time.
func (t Termination) Before(u Termination) bool {
	if t.Instance != u.Instance {
		return t.Instance < u.Instance
	}
	return t.FinishedAt.Before(u.FinishedAt)
}

// Ended is a terminated container as a status shows it, cut to what identifies and explains
// the termination.
type Ended struct {
	Reason      string
	ExitCode    int32
	StartedAt   time.Time
	FinishedAt  time.Time
	ContainerID string
}

// Status is what a container status says about terminations.
type Status struct {
	RestartCount int32
	// ContainerID is the status' own container ID: the newest container the kubelet knows.
	ContainerID string
	// Current is state.terminated: the current container ended.
	Current *Ended
	// Last is lastState.terminated: the previous container ended.
	Last *Ended
}

// FromContainerStatus cuts a container status to its terminations.
func FromContainerStatus(s *corev1.ContainerStatus) Status {
	return Status{
		RestartCount: s.RestartCount,
		ContainerID:  s.ContainerID,
		Current:      ended(s.State.Terminated),
		Last:         ended(s.LastTerminationState.Terminated),
	}
}

func ended(t *corev1.ContainerStateTerminated) *Ended {
	if t == nil {
		return nil
	}
	return &Ended{Reason: t.Reason, ExitCode: t.ExitCode, StartedAt: t.StartedAt.UTC(), FinishedAt: t.FinishedAt.UTC(), ContainerID: t.ContainerID}
}

// Visible returns the terminations a container status shows, oldest first, each once.
// The array result keeps the common path free of allocations.
func Visible(status *Status) (out [2]Termination, n int) {
	restarts := max(int64(status.RestartCount), 0)
	current := status.Current
	if current != nil && current.madeUp() && status.ContainerID == "" && (status.Last == nil || status.Last.ContainerID == "") {
		// The status manager ended a pod whose container never ran at this restart count: it
		// waited (behind an init container, say), or the kubelet raised the count when it made
		// up the end of a container the runtime lost. No instance ended.
		current = nil
	}
	if last := status.Last; last != nil {
		instance := max(restarts-1, 0)
		backOff := last.ContainerID != "" && last.ContainerID == status.ContainerID
		if backOff && current != nil && current.madeUp() {
			// The back-off form ended by the status manager: its state.terminated reports no
			// instance.
			current = nil
		}
		if current == nil && backOff {
			// The back-off form: no newer container exists, lastState is the newest run.
			instance = restarts
		}
		out[n] = from(last, instance)
		// The kubelet's default status after the runtime lost the container keeps lastState
		// but shows no container ID: the end of the previous instance, or of this one if it
		// was lost in back-off. Who saw the container run can tell.
		out[n].MaybeLater = status.ContainerID == "" && last.ContainerID != "" && (current == nil || current.madeUp())
		n++
	}
	if cur := current; cur != nil {
		t := from(cur, restarts)
		switch {
		case n == 1 && out[0].Key() == t.Key():
			// The same container in both fields: keep the attribution of the current state.
			out[0] = t
		case n == 1 && t.Before(out[0]):
			out[1], out[0] = out[0], t
			n++
		default:
			out[n] = t
			n++
		}
	}
	return out, n
}

// madeUp tells a state.terminated that the kubelet wrote for a container it found no trace of:
// no container ID, no times, the outcome unknown.
func (e *Ended) madeUp() bool {
	return e.Reason == ReasonStatusUnknown && e.ContainerID == "" && e.FinishedAt.IsZero() && e.StartedAt.IsZero()
}

func from(e *Ended, instance int64) Termination {
	return Termination{
		Instance:    instance,
		Reason:      e.Reason,
		ExitCode:    e.ExitCode,
		FinishedAt:  e.FinishedAt,
		ContainerID: e.ContainerID,
		StartedAt:   e.StartedAt,
	}
}
