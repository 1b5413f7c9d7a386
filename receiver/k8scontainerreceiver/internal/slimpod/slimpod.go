// Package slimpod cuts a pod down to the fields the receiver uses before the informer caches
// it. A full pod with managed fields, environment, volumes and conditions takes several
// kilobytes; the informer keeps one per pod, so at 100k pods this is most of the memory.
package slimpod

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Transform returns an informer transform that keeps, of each pod, its identity, node, the
// named labels and annotations, the memory resources of its containers and the restart
// counts and terminations of its container statuses. It is idempotent.
func Transform(labels, annotations []string) cache.TransformFunc {
	return func(obj any) (any, error) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			// Tombstones (cache.DeletedFinalStateUnknown) carry an already cut pod.
			return obj, nil
		}
		return Slim(pod, labels, annotations), nil
	}
}

// Slim returns the cut-down copy of pod; it shares no memory with it.
func Slim(pod *corev1.Pod, labels, annotations []string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         pod.Namespace,
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			DeletionTimestamp: pod.DeletionTimestamp,
			Labels:            pick(pod.Labels, labels),
			Annotations:       pick(pod.Annotations, annotations),
		},
		Spec: corev1.PodSpec{
			NodeName:       pod.Spec.NodeName,
			InitContainers: containers(pod.Spec.InitContainers),
			Containers:     containers(pod.Spec.Containers),
		},
		Status: corev1.PodStatus{
			InitContainerStatuses:      statuses(pod.Status.InitContainerStatuses),
			ContainerStatuses:          statuses(pod.Status.ContainerStatuses),
			EphemeralContainerStatuses: statuses(pod.Status.EphemeralContainerStatuses),
		},
	}
}

func pick(from map[string]string, keys []string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := from[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[k] = v
		}
	}
	return out
}

func containers(in []corev1.Container) []corev1.Container {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i := range in {
		out[i] = corev1.Container{Name: in[i].Name, Resources: memoryOnly(in[i].Resources)}
	}
	return out
}

func statuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i := range in {
		s := &in[i]
		out[i] = corev1.ContainerStatus{
			Name:         s.Name,
			ContainerID:  s.ContainerID,
			RestartCount: s.RestartCount,
			State: corev1.ContainerState{
				Terminated: terminated(s.State.Terminated),
			},
			LastTerminationState: corev1.ContainerState{
				Terminated: terminated(s.LastTerminationState.Terminated),
			},
		}
		if s.Resources != nil {
			r := memoryOnly(*s.Resources)
			out[i].Resources = &r
		}
	}
	return out
}

// terminated drops the termination message: it can hold up to 4 KiB of the container's output.
func terminated(t *corev1.ContainerStateTerminated) *corev1.ContainerStateTerminated {
	if t == nil {
		return nil
	}
	return &corev1.ContainerStateTerminated{
		ExitCode:    t.ExitCode,
		Reason:      t.Reason,
		FinishedAt:  t.FinishedAt,
		ContainerID: t.ContainerID,
	}
}

func memoryOnly(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Limits:   memoryOf(r.Limits),
		Requests: memoryOf(r.Requests),
	}
}

func memoryOf(l corev1.ResourceList) corev1.ResourceList {
	q, ok := l[corev1.ResourceMemory]
	if !ok {
		return nil
	}
	return corev1.ResourceList{corev1.ResourceMemory: q.DeepCopy()}
}
