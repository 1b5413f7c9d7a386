// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
)

// workload is a container of the workload image with a memory limit and its behaviour env.
func workload(name, limit string, env map[string]string) corev1.Container {
	c := corev1.Container{
		Name:            name,
		Image:           testworkload.WorkloadImage,
		ImagePullPolicy: corev1.PullNever,
		Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)},
		},
	}
	for k, v := range env {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
	}
	return c
}

// leaker leaks 4 MiB every 100 ms: the kernel OOM-kills it a couple of seconds after it starts.
func leaker(name string) corev1.Container {
	return workload(name, "64Mi", map[string]string{"WORKLOAD_MODE": "leak"})
}

// namespace creates a namespace for one test and deletes its pods at the end.
func namespace(t *testing.T, name string) string {
	t.Helper()
	s := need(t)
	ctx := context.Background()
	require.NoError(t, s.cluster.EnsureNamespace(ctx, name))
	t.Cleanup(func() {
		zero := int64(0)
		_ = s.admin.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	})
	return name
}

func createPod(t *testing.T, ns, name, node string, restart corev1.RestartPolicy, init []corev1.Container, containers ...corev1.Container) *corev1.Pod {
	t.Helper()
	s := need(t)
	zero := int64(0)
	pod, err := s.admin.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: &zero,
			InitContainers:                init,
			Containers:                    containers,
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return pod
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	s := need(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	zero := int64(0)
	require.NoError(t, s.admin.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	require.Eventually(t, func() bool {
		_, err := s.admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err != nil
	}, time.Minute, 200*time.Millisecond, "pod %s/%s not gone", ns, name)
}

// oomTimes watches a pod and sends, for each termination of the container that the API
// server shows as OOMKilled for the first time, when it became visible.
func oomTimes(t *testing.T, ns, pod, container string) <-chan time.Time {
	t.Helper()
	s := need(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := s.admin.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", pod).String(),
	})
	require.NoError(t, err)
	out := make(chan time.Time, 64)
	go func() {
		defer w.Stop()
		seen := map[string]bool{}
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			now := time.Now()
			for _, st := range allStatuses(p) {
				if st.Name != container {
					continue
				}
				for _, term := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
					if term == nil || term.Reason != "OOMKilled" {
						continue
					}
					key := term.ContainerID + "/" + term.FinishedAt.String()
					if !seen[key] {
						seen[key] = true
						out <- now
					}
				}
			}
		}
	}()
	return out
}

func allStatuses(p *corev1.Pod) []corev1.ContainerStatus {
	all := append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...)
	all = append(all, p.Status.ContainerStatuses...)
	return append(all, p.Status.EphemeralContainerStatuses...)
}

// waitStatus waits until f holds for the pod.
func waitStatus(t *testing.T, ns, name string, within time.Duration, f func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	s := need(t)
	var pod *corev1.Pod
	require.Eventually(t, func() bool {
		p, err := s.admin.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		pod = p
		return f(p)
	}, within, 200*time.Millisecond, "pod %s/%s: condition not reached", ns, name)
	return pod
}

func status(p *corev1.Pod, container string) (corev1.ContainerStatus, error) {
	for _, st := range allStatuses(p) {
		if st.Name == container {
			return st, nil
		}
	}
	return corev1.ContainerStatus{}, fmt.Errorf("no status for %s", container)
}
