// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// On the kubelet-less node the test is the kubelet: it writes pod statuses through the API, for
// sequences a real kubelet cannot produce on demand.

// standinStart is when the stand-in pods' containers began, an hour back: the times the test
// writes lie in the past, as a kubelet's do (a status never says a container ended after the
// moment it was written).
var standinStart = time.Now().Add(-time.Hour).Truncate(time.Second)

func terminated(container string, instance int32, reason string) *corev1.ContainerStateTerminated {
	exit := int32(1)
	if reason == "OOMKilled" {
		exit = 137
	}
	return &corev1.ContainerStateTerminated{
		Reason:      reason,
		ExitCode:    exit,
		StartedAt:   metav1.NewTime(standinStart.Add(time.Duration(instance) * time.Minute)),
		FinishedAt:  metav1.NewTime(standinStart.Add(time.Duration(instance)*time.Minute + 30*time.Second)),
		ContainerID: fmt.Sprintf("containerd://%s-%d", container, instance),
	}
}

// running is the status of a container in its instance-th run after the previous one ended.
func running(container string, instance int32, lastReason string) corev1.ContainerStatus {
	st := corev1.ContainerStatus{
		Name:         container,
		Image:        "docker.io/oomwatch/workload:dev",
		RestartCount: instance,
		Ready:        true,
		State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(standinStart.Add(time.Duration(instance) * time.Minute))}},
		ContainerID:  fmt.Sprintf("containerd://%s-%d", container, instance),
	}
	if instance > 0 {
		st.LastTerminationState.Terminated = terminated(container, instance-1, lastReason)
	}
	return st
}

// ended is the status right after the instance-th run ended, before the restart.
func ended(container string, instance int32, reason, lastReason string) corev1.ContainerStatus {
	st := running(container, instance, lastReason)
	st.Ready = false
	st.State = corev1.ContainerState{Terminated: terminated(container, instance, reason)}
	return st
}

func writeStatus(t *testing.T, pod *corev1.Pod, statuses ...corev1.ContainerStatus) *corev1.Pod {
	t.Helper()
	s := need(t)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: statuses}
	updated, err := s.admin.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	return updated
}

func standinPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	return createPod(t, ns, name, standinNode, corev1.RestartPolicyAlways, nil, workload("app", "64Mi", nil))
}

// TestStandinSeveralTerminationsInOneInterval: three OOM kills written faster than the
// collection interval are all counted.
func TestStandinSeveralTerminationsInOneInterval(t *testing.T) {
	ns := namespace(t, "e2e-burst")
	a := startAgent(t, agentOptions{node: standinNode, kubelet: "off"})
	pod := standinPod(t, ns, "burst")
	pod = writeStatus(t, pod, running("app", 0, ""))
	a.waitOOMs(string(pod.UID), "app", 0, 30*time.Second)

	for i := range int32(3) {
		pod = writeStatus(t, pod, ended("app", i, "OOMKilled", "OOMKilled"))
		pod = writeStatus(t, pod, running("app", i+1, "OOMKilled"))
		time.Sleep(100 * time.Millisecond)
	}
	a.waitOOMs(string(pod.UID), "app", 3, scrapes(1))
}

// TestStandinStateThenLastStateCountedOnce: the same termination, first in state.terminated,
// then in lastState.terminated after the restart, is one OOM kill.
func TestStandinStateThenLastStateCountedOnce(t *testing.T) {
	ns := namespace(t, "e2e-once")
	a := startAgent(t, agentOptions{node: standinNode, kubelet: "off"})
	pod := standinPod(t, ns, "once")
	pod = writeStatus(t, pod, running("app", 0, ""))
	a.waitOOMs(string(pod.UID), "app", 0, 30*time.Second)
	pod = writeStatus(t, pod, ended("app", 0, "OOMKilled", ""))
	a.waitOOMs(string(pod.UID), "app", 1, scrapes(1))
	wrote := time.Now()
	writeStatus(t, pod, running("app", 1, "OOMKilled"))
	// Two reports after the restart was written: the scrape that saw it, and one more.
	p := a.waitReports(string(pod.UID), "app", wrote, 2)
	assert.Equal(t, 1.0, p.Value)
}

// TestStandinJumpCountedByGapPolicy: the restart count jumps from 1 to 4 with only the last
// kill visible (the statuses in between were never written). lower_bound counts what it saw;
// upper_bound counts the two unseen instances too.
func TestStandinJumpCountedByGapPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   float64
	}{{"lower_bound", 2}, {"upper_bound", 4}} {
		t.Run(tc.policy, func(t *testing.T) {
			ns := namespace(t, "e2e-gap-"+tc.policy[:5])
			a := startAgent(t, agentOptions{node: standinNode, kubelet: "off", gapPolicy: tc.policy, name: tc.policy})
			pod := standinPod(t, ns, "gap")
			pod = writeStatus(t, pod, running("app", 0, ""))
			a.waitOOMs(string(pod.UID), "app", 0, 30*time.Second)
			pod = writeStatus(t, pod, ended("app", 0, "OOMKilled", ""))
			pod = writeStatus(t, pod, running("app", 1, "OOMKilled"))
			a.waitOOMs(string(pod.UID), "app", 1, scrapes(1))
			// Instances 1 and 2 end unseen; instance 3 is OOM-killed and 4 runs.
			pod = writeStatus(t, pod, running("app", 4, "OOMKilled"))
			a.waitOOMs(string(pod.UID), "app", tc.want, scrapes(1))
			// The count stays at the next scrapes.
			p := a.waitReports(string(pod.UID), "app", time.Now(), 2)
			assert.Equal(t, tc.want, p.Value)
		})
	}
}
