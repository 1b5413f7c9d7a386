// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package slimpod

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workload"
)

func fullPod() *corev1.Pod {
	terminated := &corev1.ContainerStateTerminated{
		Reason: "OOMKilled", ExitCode: 137, Message: "a long message", ContainerID: "containerd://a",
		FinishedAt: metav1.Unix(100, 0), StartedAt: metav1.Unix(90, 0),
	}
	spec := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("1")},
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
	}
	applied := corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7",
			Labels:        map[string]string{"app": "hog", "tier": "batch"},
			Annotations:   map[string]string{"team": "mem", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: corev1.PodSpec{
			NodeName:       "node-a",
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox", Resources: spec}},
			Containers:     []corev1.Container{{Name: "hog", Image: "memhog", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}, Resources: spec}},
		},
		Status: corev1.PodStatus{
			Phase:                 corev1.PodRunning,
			Conditions:            []corev1.PodCondition{{Type: corev1.PodReady}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "hog", RestartCount: 3, ContainerID: "containerd://b", Image: "memhog",
				State:                corev1.ContainerState{Terminated: terminated},
				LastTerminationState: corev1.ContainerState{Terminated: terminated},
				Resources:            &applied,
			}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debug", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
}

func TestSlimKeepsWhatTheReceiverUses(t *testing.T) {
	t.Parallel()
	slim := Slim(fullPod(), []string{"app", "missing"}, []string{"team"})

	assert.Equal(t, metav1.ObjectMeta{
		Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7",
		Labels:      map[string]string{"app": "hog"},
		Annotations: map[string]string{"team": "mem"},
	}, slim.ObjectMeta)
	assert.Equal(t, "node-a", slim.NodeName)
	ended := &termination.Ended{Reason: "OOMKilled", ExitCode: 137, StartedAt: metav1.Unix(90, 0).UTC(), FinishedAt: metav1.Unix(100, 0).UTC(), ContainerID: "containerd://a"}
	assert.Equal(t, []Container{
		{Name: "init", MemoryLimit: 64 << 20, MemoryRequest: 32 << 20, Status: termination.Status{Current: &termination.Ended{Reason: "Completed", FinishedAt: metav1.Time{}.UTC()}}},
		// The applied limit wins over the spec; the request comes from the spec.
		{Name: "hog", MemoryLimit: 128 << 20, MemoryRequest: 32 << 20, Status: termination.Status{RestartCount: 3, ContainerID: "containerd://b", Current: ended, Last: ended}},
		{Name: "debug"},
	}, slim.Containers)
}

func TestTransformIsIdempotentAndPassesTombstones(t *testing.T) {
	t.Parallel()
	tf := Transform([]string{"app"}, nil)
	once, err := tf(fullPod())
	require.NoError(t, err)
	twice, err := tf(once)
	require.NoError(t, err)
	assert.Same(t, once, twice)

	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: once}
	got, err := tf(tomb)
	require.NoError(t, err)
	assert.Equal(t, tomb, got)

	// The informer keys and versions the cut pod like the pod.
	key, err := cache.MetaNamespaceKeyFunc(once)
	require.NoError(t, err)
	assert.Equal(t, "ns/p", key)
}

var controller = true

func TestSlimKeepsTheControllerAndTemplateHash(t *testing.T) {
	t.Parallel()
	pod := fullPod()
	pod.Labels["pod-template-hash"] = "7d9f8b6c5"
	pod.OwnerReferences = []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "not-the-controller", UID: "cm"},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "hog-7d9f8b6c5", UID: "rs", Controller: &controller, BlockOwnerDeletion: &controller},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "other-7d9f8b6c5", UID: "rs2"},
	}

	slim := Slim(pod, []string{"app"}, nil)
	assert.Equal(t, Owner{Kind: "ReplicaSet", Name: "hog-7d9f8b6c5"}, slim.Owner)
	assert.Equal(t, "7d9f8b6c5", slim.PodTemplateHash)
	// The hash is kept apart from the configured labels, and the owner references are not
	// kept in the object meta.
	assert.Equal(t, map[string]string{"app": "hog"}, slim.Labels)
	assert.Nil(t, slim.OwnerReferences)
	assert.Equal(t, workload.Names{ReplicaSet: "hog-7d9f8b6c5", Deployment: "hog"}, slim.Workload())

	// Configured, the hash is a label as well.
	slim = Slim(pod, []string{"pod-template-hash"}, nil)
	assert.Equal(t, map[string]string{"pod-template-hash": "7d9f8b6c5"}, slim.Labels)
	assert.Equal(t, "7d9f8b6c5", slim.PodTemplateHash)
}

func TestSlimWithoutController(t *testing.T) {
	t.Parallel()
	pod := fullPod()
	pod.OwnerReferences = []metav1.OwnerReference{
		{Kind: "ReplicaSet", Name: "web-7d9f8b6c5"},
		{Kind: "Job", Name: "x", Controller: new(bool)},
	}
	slim := Slim(pod, nil, nil)
	assert.Equal(t, Owner{}, slim.Owner)
	assert.Empty(t, slim.PodTemplateHash)
	assert.Equal(t, workload.Names{}, slim.Workload())
}

func TestSlimWorkloads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		owner  Owner
		labels map[string]string
		want   workload.Names
	}{
		{"deployment", Owner{"ReplicaSet", "web-5c6b7d8f9"}, map[string]string{"pod-template-hash": "5c6b7d8f9"}, workload.Names{ReplicaSet: "web-5c6b7d8f9", Deployment: "web"}},
		{"bare replicaset", Owner{"ReplicaSet", "web"}, nil, workload.Names{ReplicaSet: "web"}},
		{"statefulset", Owner{"StatefulSet", "db"}, map[string]string{"controller-revision-hash": "db-6d4f"}, workload.Names{StatefulSet: "db"}},
		{"daemonset", Owner{"DaemonSet", "node-exporter"}, nil, workload.Names{DaemonSet: "node-exporter"}},
		{"cronjob", Owner{"Job", "backup-29123456"}, nil, workload.Names{Job: "backup-29123456", CronJob: "backup"}},
		{"job", Owner{"Job", "backup-2"}, nil, workload.Names{Job: "backup-2"}},
		{"other controller", Owner{"Node", "node-a"}, nil, workload.Names{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pod := fullPod()
			pod.Labels = tc.labels
			pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "x/v1", Kind: tc.owner.Kind, Name: tc.owner.Name, UID: "o", Controller: &controller}}
			slim := Slim(pod, nil, nil)
			assert.Equal(t, tc.owner, slim.Owner)
			assert.Equal(t, tc.want, slim.Workload())
		})
	}
}

// TestSlimSharesOwnerStrings checks that the kept owner costs no more than its name: the
// usual kinds are constants and the hash is the tail of a Deployment's ReplicaSet name.
func TestSlimSharesOwnerStrings(t *testing.T) {
	t.Parallel()
	pod := fullPod()
	// Built at run time, as a decoded pod's strings are.
	kind := strings.Clone("ReplicaSet")
	name := strings.Clone("hog-7d9f8b6c5")
	pod.Labels["pod-template-hash"] = strings.Clone("7d9f8b6c5")
	pod.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &controller}}

	slim := Slim(pod, nil, nil)
	assert.Same(t, unsafe.StringData(workload.KindReplicaSet), unsafe.StringData(slim.Owner.Kind))
	assert.Same(t, unsafe.StringData(name), unsafe.StringData(slim.Owner.Name))
	assert.Same(t, unsafe.StringData(name[len("hog-"):]), unsafe.StringData(slim.PodTemplateHash))

	// A hash that is not the owner's tail is kept as it is.
	pod.OwnerReferences[0].Name = "hog"
	slim = Slim(pod, nil, nil)
	assert.Equal(t, "7d9f8b6c5", slim.PodTemplateHash)
	assert.Equal(t, Owner{Kind: "ReplicaSet", Name: "hog"}, slim.Owner)

	// Other kinds are kept as they come.
	pod.OwnerReferences[0].Kind = "CloneSet"
	assert.Equal(t, "CloneSet", Slim(pod, nil, nil).Owner.Kind)
}

// TestSlimKeepsThePodsOwnMemoryLimit: pod-level resources set the limit of the pod's cgroup;
// without them it is the sum of the containers' and the pod has none of its own.
func TestSlimKeepsThePodsOwnMemoryLimit(t *testing.T) {
	t.Parallel()
	pod := fullPod()
	assert.Zero(t, Slim(pod, nil, nil).MemoryLimit)
	pod.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("96Mi")}}
	assert.Zero(t, Slim(pod, nil, nil).MemoryLimit, "a request is no limit")
	pod.Spec.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("192Mi"), corev1.ResourceCPU: resource.MustParse("2")}
	assert.Equal(t, int64(192<<20), Slim(pod, nil, nil).MemoryLimit)
}
