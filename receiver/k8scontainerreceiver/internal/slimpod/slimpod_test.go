package slimpod

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func fullPod() *corev1.Pod {
	terminated := &corev1.ContainerStateTerminated{
		Reason: "OOMKilled", ExitCode: 137, Message: "a long message", ContainerID: "containerd://a",
		FinishedAt: metav1.Unix(100, 0), StartedAt: metav1.Unix(90, 0),
	}
	res := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("1")},
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
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
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox", Resources: res}},
			Containers:     []corev1.Container{{Name: "hog", Image: "memhog", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}, Resources: res}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "hog", RestartCount: 3, ContainerID: "containerd://b", Image: "memhog",
				State:                corev1.ContainerState{Terminated: terminated},
				LastTerminationState: corev1.ContainerState{Terminated: terminated},
				Resources:            &res,
			}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debug", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
}

func TestSlimKeepsWhatTheReceiverUses(t *testing.T) {
	t.Parallel()
	full := fullPod()
	slim := Slim(full, []string{"app", "missing"}, []string{"team"})

	assert.Equal(t, "p", slim.Name)
	assert.Equal(t, "ns", slim.Namespace)
	assert.Equal(t, "u", string(slim.UID))
	assert.Equal(t, "node-a", slim.Spec.NodeName)
	assert.Equal(t, map[string]string{"app": "hog"}, slim.Labels)
	assert.Equal(t, map[string]string{"team": "mem"}, slim.Annotations)
	assert.Empty(t, slim.ManagedFields)
	assert.Empty(t, slim.Status.Conditions)

	c := slim.Spec.Containers[0]
	assert.Equal(t, "hog", c.Name)
	assert.Empty(t, c.Image)
	assert.Empty(t, c.Env)
	assert.Equal(t, corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}, c.Resources.Limits)
	assert.Equal(t, corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}, c.Resources.Requests)
	assert.Equal(t, "init", slim.Spec.InitContainers[0].Name)

	s := slim.Status.ContainerStatuses[0]
	assert.Equal(t, int32(3), s.RestartCount)
	assert.Equal(t, "containerd://b", s.ContainerID)
	assert.Empty(t, s.Image)
	require.NotNil(t, s.State.Terminated)
	assert.Equal(t, "OOMKilled", s.State.Terminated.Reason)
	assert.Equal(t, int32(137), s.State.Terminated.ExitCode)
	assert.Equal(t, "containerd://a", s.State.Terminated.ContainerID)
	assert.Equal(t, metav1.Unix(100, 0), s.State.Terminated.FinishedAt)
	assert.Empty(t, s.State.Terminated.Message)
	require.NotNil(t, s.LastTerminationState.Terminated)
	require.NotNil(t, s.Resources)
	assert.Len(t, s.Resources.Limits, 1)
	assert.Equal(t, "debug", slim.Status.EphemeralContainerStatuses[0].Name)

	// The cut copy shares nothing with the original.
	full.Status.ContainerStatuses[0].State.Terminated.Reason = "changed"
	full.Labels["app"] = "changed"
	assert.Equal(t, "OOMKilled", s.State.Terminated.Reason)
	assert.Equal(t, "hog", slim.Labels["app"])
}

func TestTransformIsIdempotentAndPassesTombstones(t *testing.T) {
	t.Parallel()
	tf := Transform([]string{"app"}, nil)
	once, err := tf(fullPod())
	require.NoError(t, err)
	twice, err := tf(once)
	require.NoError(t, err)
	assert.Equal(t, once, twice)

	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: once}
	got, err := tf(tomb)
	require.NoError(t, err)
	assert.Equal(t, tomb, got)
}
