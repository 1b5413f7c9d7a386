// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package podtest writes pods and container statuses as the kubelet shows them, for the
// receiver's tests: one start time, T0, and one way to tell a container's history, Life.
package podtest

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// Node is the node the pods run on.
	Node = "node-a"
	// Namespace is the pods' namespace.
	Namespace = "default"
)

// T0 is the time every test starts at.
var T0 = time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)

// Life is a container's history as the kubelet shows it, as in the real samples: run N starts
// N minutes after T0 and ends 30 s later with the N-th reason; after a run the status shows it
// in state.terminated, and once the container restarted, in lastState.terminated.
type Life struct {
	Name    string
	Reasons []string
}

// NewLife returns the life of container name whose runs end with reasons, in order.
func NewLife(name string, reasons ...string) Life {
	return Life{Name: name, Reasons: reasons}
}

// Ended is how run ended.
func (l Life) Ended(run int) *corev1.ContainerStateTerminated {
	exit := int32(1)
	if l.Reasons[run] == "OOMKilled" {
		exit = 137
	}
	return &corev1.ContainerStateTerminated{
		Reason:      l.Reasons[run],
		ExitCode:    exit,
		StartedAt:   metav1.NewTime(T0.Add(time.Duration(run) * time.Minute)),
		FinishedAt:  metav1.NewTime(T0.Add(time.Duration(run)*time.Minute + 30*time.Second)),
		ContainerID: l.containerID(run),
	}
}

func (l Life) containerID(run int) string { return fmt.Sprintf("containerd://%s-%d", l.Name, run) }

// Running is the status while run runs.
func (l Life) Running(run int) corev1.ContainerStatus {
	s := corev1.ContainerStatus{
		Name:         l.Name,
		RestartCount: int32(run),
		ContainerID:  l.containerID(run),
		State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
	}
	if run > 0 {
		s.LastTerminationState.Terminated = l.Ended(run - 1)
	}
	return s
}

// Terminated is the status once run ended.
func (l Life) Terminated(run int) corev1.ContainerStatus {
	s := l.Running(run)
	s.State = corev1.ContainerState{Terminated: l.Ended(run)}
	return s
}

// Backoff is the status while the container waits in back-off after run ended: the kubelet
// moved run's state into lastState and kept run's restart count and container ID.
func (l Life) Backoff(run int) corev1.ContainerStatus {
	s := l.Running(run)
	s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	s.LastTerminationState.Terminated = l.Ended(run)
	return s
}

// EndedByKubelet is the status once the status manager ended the pod (eviction,
// activeDeadlineSeconds, node shutdown) while the container waited in back-off after run:
// TerminatePod replaces the waiting state by a made-up termination without container ID or
// times, and keeps the rest.
func (l Life) EndedByKubelet(run int) corev1.ContainerStatus {
	return EndedByKubelet(l.Backoff(run))
}

// EndedByKubelet is s once the status manager ended the pod over a state not terminated: a
// made-up termination without container ID or times, the rest of s kept.
func EndedByKubelet(s corev1.ContainerStatus) corev1.ContainerStatus {
	s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		Reason: "ContainerStatusUnknown", ExitCode: 137, Message: "The container could not be located when the pod was terminated",
	}}
	return s
}

// BackoffLost is the status the kubelet writes once the runtime lost the container that waited
// in back-off after run: its default waiting state, without a container ID, keeping the restart
// count and the back-off's lastState, which no longer tells that it ended run, not run-1.
func (l Life) BackoffLost(run int) corev1.ContainerStatus {
	s := l.Backoff(run)
	s.ContainerID = ""
	s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	return s
}

// RuntimeLost is the status the kubelet writes while run was running and the runtime lost its
// container (node rebooted, runtime state wiped): its default waiting state, without a
// container ID, keeping the restart count and lastState of the last status.
func (l Life) RuntimeLost(run int) corev1.ContainerStatus {
	s := l.Running(run)
	s.ContainerID = ""
	s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	return s
}

// LostAlone is the status the kubelet writes once the runtime lost run, which ran without
// lastState: its default waiting state, without a container ID, with a made-up end of run in
// lastState and the restart count raised to run+1.
func (l Life) LostAlone(run int) corev1.ContainerStatus {
	s := l.RuntimeLost(run)
	s.RestartCount = int32(run + 1)
	s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{Reason: "ContainerStatusUnknown", ExitCode: 137}
	return s
}

// RunningAlone is the status while run runs in a container the runtime started with nothing
// of earlier runs left: no lastState.
func (l Life) RunningAlone(run int) corev1.ContainerStatus {
	s := l.Running(run)
	s.LastTerminationState = corev1.ContainerState{}
	return s
}

// Statuses are the kubelet's successive statuses over the whole life: running run 0,
// terminated run 0, running run 1 (run 0 in lastState), terminated run 1, ..., running the
// run after the last.
func (l Life) Statuses() []corev1.ContainerStatus {
	out := []corev1.ContainerStatus{l.Running(0)}
	for run := range l.Reasons {
		out = append(out, l.Terminated(run), l.Running(run+1))
	}
	return out
}

// Rebooted is l's life after a node reboot: the same pod, new containers, the restart count
// starting again at 0. Its statuses name another container: give them l's name with Named.
func (l Life) Rebooted() Life {
	return Life{Name: l.Name + "-after-reboot", Reasons: l.Reasons}
}

// Named gives status s the container name name.
func Named(s corev1.ContainerStatus, name string) corev1.ContainerStatus {
	s.Name = name
	return s
}

// NewPod is a running pod on Node with a container per status, each limited to 64 MiB and
// requesting 32 MiB, labelled app=name.
func NewPod(name, uid string, statuses ...corev1.ContainerStatus) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name, UID: types.UID(uid), Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: Node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: statuses},
	}
	for _, s := range statuses {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: s.Name, Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
		}})
	}
	return p
}

// Mirror makes p the mirror pod of the static pod staticUID, as the kubelet creates it.
func Mirror(p *corev1.Pod, staticUID string) *corev1.Pod {
	q := p.DeepCopy()
	q.Annotations = map[string]string{
		corev1.MirrorPodAnnotationKey: staticUID,
		"kubernetes.io/config.hash":   staticUID,
		"kubernetes.io/config.source": "file",
	}
	return q
}

// WithStatus is a copy of p whose containers show statuses.
func WithStatus(p *corev1.Pod, statuses ...corev1.ContainerStatus) *corev1.Pod {
	q := p.DeepCopy()
	q.Status.ContainerStatuses = statuses
	return q
}
