// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package slimpod cuts a pod down to the fields the receiver uses before the informer caches
// it. The informer keeps one object per pod; a full pod with managed fields, environment,
// volumes and conditions, or even a corev1.Pod with only a few fields set (its structs and
// resource maps are large), costs kilobytes, so at 100k pods the cut decides the memory.
package slimpod

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workload"
)

// Pod is what the receiver keeps of a pod. The embedded ObjectMeta (name, namespace, UID,
// resource version and the named labels and annotations only) lets the informer key and
// version it like the pod itself.
type Pod struct {
	metav1.ObjectMeta
	NodeName string
	// StaticUID is, for a mirror pod, the UID of the static pod it mirrors: the UID the kubelet,
	// the runtime, the cgroup tree and the kubelet's stats know the pod by. "" for other pods.
	StaticUID types.UID
	// Owner is the pod's controller owner reference, zero when it has none.
	Owner Owner
	// PodTemplateHash is the pod's pod-template-hash label, "" when it has none. It is kept
	// whatever labels are configured, to name the Deployment, and is not one of Labels.
	PodTemplateHash string
	// QOSClass is the pod's QoS class, "" until the status says.
	QOSClass corev1.PodQOSClass
	// MemoryLimit is the pod's own memory limit in bytes (pod-level resources), 0 when it has
	// none: the limit of the pod's cgroup is then the sum of its containers' limits.
	MemoryLimit int64
	// Containers are the init, regular and ephemeral containers that have a status.
	Containers []Container
}

// Owner is the kind and name of the object that controls a pod.
type Owner struct {
	Kind, Name string
}

// Container is one container's status, memory resources and terminations.
type Container struct {
	Name string
	// MemoryLimit and MemoryRequest are in bytes, 0 when not set: the resources the kubelet
	// reports as applied (they follow in-place resizes), else those of the pod spec.
	MemoryLimit   int64
	MemoryRequest int64
	Status        termination.Status
}

// Transform returns an informer transform that turns each *corev1.Pod into a *Pod. It passes
// anything else (a *Pod already, tombstones carrying one) through unchanged.
func Transform(labels, annotations []string) cache.TransformFunc {
	return func(obj any) (any, error) {
		if pod, ok := obj.(*corev1.Pod); ok {
			return Slim(pod, labels, annotations), nil
		}
		return obj, nil
	}
}

// Slim returns the cut-down copy of pod. It shares only strings, which are immutable.
func Slim(pod *corev1.Pod, labels, annotations []string) *Pod {
	n := len(pod.Status.InitContainerStatuses) + len(pod.Status.ContainerStatuses) + len(pod.Status.EphemeralContainerStatuses)
	p := &Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            pod.Name,
			Namespace:       pod.Namespace,
			UID:             pod.UID,
			ResourceVersion: pod.ResourceVersion,
			Labels:          pick(pod.Labels, labels),
			Annotations:     pick(pod.Annotations, annotations),
		},
		NodeName:   pod.Spec.NodeName,
		StaticUID:  types.UID(pod.Annotations[corev1.MirrorPodAnnotationKey]),
		QOSClass:   qosClass(pod.Status.QOSClass),
		Containers: make([]Container, 0, n),
	}
	if pod.Spec.Resources != nil {
		p.MemoryLimit = memory(nil, pod.Spec.Resources, func(r *corev1.ResourceRequirements) corev1.ResourceList { return r.Limits })
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		p.Owner = Owner{Kind: kind(ref.Kind), Name: ref.Name}
	}
	p.PodTemplateHash = templateHash(pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey], p.Owner.Name)
	p.add(pod.Status.InitContainerStatuses, pod.Spec.InitContainers)
	p.add(pod.Status.ContainerStatuses, pod.Spec.Containers)
	// Ephemeral containers have no resources.
	p.add(pod.Status.EphemeralContainerStatuses, nil)
	return p
}

// RuntimeUID is the UID the kubelet and the runtime know the pod by: a mirror pod's static
// pod's, else the pod's own.
func (p *Pod) RuntimeUID() types.UID {
	if p.StaticUID != "" {
		return p.StaticUID
	}
	return p.UID
}

// Workload returns the names of the workloads the pod belongs to, as far as its owner and
// pod-template-hash label tell.
func (p *Pod) Workload() workload.Names {
	return workload.Of(p.Owner.Kind, p.Owner.Name, p.PodTemplateHash)
}

// qosClass returns the QoS classes as constants, so pods do not keep a decoded copy each.
func qosClass(q corev1.PodQOSClass) corev1.PodQOSClass {
	for _, c := range [...]corev1.PodQOSClass{corev1.PodQOSGuaranteed, corev1.PodQOSBurstable, corev1.PodQOSBestEffort} {
		if q == c {
			return c
		}
	}
	return q
}

// kind returns the usual owner kinds as constants, so pods do not keep a decoded copy each.
func kind(k string) string {
	for _, c := range [...]string{workload.KindReplicaSet, workload.KindStatefulSet, workload.KindDaemonSet, workload.KindJob} {
		if k == c {
			return c
		}
	}
	return k
}

// templateHash returns hash, sharing the bytes of owner when owner ends with it as a
// Deployment's ReplicaSet name does, so the pod keeps no copy of its own.
func templateHash(hash, owner string) string {
	if hash != "" && strings.HasSuffix(owner, hash) {
		return owner[len(owner)-len(hash):]
	}
	return hash
}

func (p *Pod) add(statuses []corev1.ContainerStatus, spec []corev1.Container) {
	for i := range statuses {
		s := &statuses[i]
		var specRes *corev1.ResourceRequirements
		for j := range spec {
			if spec[j].Name == s.Name {
				specRes = &spec[j].Resources
				break
			}
		}
		p.Containers = append(p.Containers, Container{
			Name:          s.Name,
			MemoryLimit:   memory(s.Resources, specRes, func(r *corev1.ResourceRequirements) corev1.ResourceList { return r.Limits }),
			MemoryRequest: memory(s.Resources, specRes, func(r *corev1.ResourceRequirements) corev1.ResourceList { return r.Requests }),
			Status:        termination.FromContainerStatus(s),
		})
	}
}

func memory(applied, spec *corev1.ResourceRequirements, list func(*corev1.ResourceRequirements) corev1.ResourceList) int64 {
	for _, r := range [2]*corev1.ResourceRequirements{applied, spec} {
		if r == nil {
			continue
		}
		if q, ok := list(r)[corev1.ResourceMemory]; ok {
			return q.Value()
		}
	}
	return 0
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
