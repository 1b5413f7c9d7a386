package slimpod

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
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
	ended := &termination.Ended{Reason: "OOMKilled", ExitCode: 137, FinishedAt: metav1.Unix(100, 0).UTC(), ContainerID: "containerd://a"}
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
