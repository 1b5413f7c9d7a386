// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
)

// TestE2EControllersRunWorkloads: the controller-manager and the scheduler do for workloads what
// they do in any cluster, on the real node, while the kubelet-less node stays Ready and out of
// the way past the node lifecycle controller's grace period.
func TestE2EControllersRunWorkloads(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts := Options{Node: true, StandinNodeName: "oomwatch-standin", Log: testlog.T(t)}
	began := time.Now()
	c, err := Start(ctx, opts)
	t.Cleanup(func() { _ = Teardown(context.Background(), opts) })
	require.NoError(t, err)
	cs, err := c.Client()
	require.NoError(t, err)
	realNode := c.Options().NodeName

	// A pod on the stand-in node, with a status written as a kubelet would: nothing may change it.
	require.NoError(t, c.EnsureNamespace(ctx, "workloads"))
	standinPod := writtenStandinPod(ctx, t, cs, "workloads")

	t.Run("namespace gets its service account and root CA", func(t *testing.T) {
		// Created directly, not with EnsureNamespace: the controllers alone fill it.
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fresh"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		ca, err := os.ReadFile(c.CAFile())
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			_, err := cs.CoreV1().ServiceAccounts("fresh").Get(ctx, "default", metav1.GetOptions{})
			return err == nil
		}, time.Minute, 100*time.Millisecond, "no service account default")
		require.Eventually(t, func() bool {
			cm, err := cs.CoreV1().ConfigMaps("fresh").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err == nil && cm.Data["ca.crt"] == string(ca)
		}, time.Minute, 100*time.Millisecond, "no kube-root-ca.crt holding the cluster CA")
	})

	t.Run("token controller fills a token Secret that authenticates", func(t *testing.T) {
		_, err := cs.CoreV1().Secrets("workloads").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "default-token", Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type:       corev1.SecretTypeServiceAccountToken,
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		var secret *corev1.Secret
		require.Eventually(t, func() bool {
			secret, err = cs.CoreV1().Secrets("workloads").Get(ctx, "default-token", metav1.GetOptions{})
			return err == nil && len(secret.Data[corev1.ServiceAccountTokenKey]) > 0
		}, time.Minute, 100*time.Millisecond, "the token controller did not fill the Secret")
		ca, err := os.ReadFile(c.CAFile())
		require.NoError(t, err)
		assert.Equal(t, ca, secret.Data[corev1.ServiceAccountRootCAKey])
		sa, err := kubernetes.NewForConfig(&rest.Config{
			Host:            c.APIServerURL(),
			BearerToken:     string(secret.Data[corev1.ServiceAccountTokenKey]),
			TLSClientConfig: rest.TLSClientConfig{CAData: secret.Data[corev1.ServiceAccountRootCAKey]},
		})
		require.NoError(t, err)
		review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.Equal(t, "system:serviceaccount:workloads:default", review.Status.UserInfo.Username)
	})

	t.Run("deployment is scheduled onto the real node and garbage-collected", func(t *testing.T) {
		labels := map[string]string{"app": "steady"}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "steady", Namespace: "workloads"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: workloadSpec(corev1.RestartPolicyAlways, nil)},
			},
		}
		created := time.Now()
		_, err := cs.AppsV1().Deployments("workloads").Create(ctx, d, metav1.CreateOptions{})
		require.NoError(t, err)
		// Running means the scheduler bound it and the kubelet mounted its projected
		// service-account token (a token request, and the namespace's kube-root-ca.crt).
		pod := waitPod(ctx, t, cs, "workloads", "app=steady", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning
		})
		t.Logf("deployment created to pod Running: %s", time.Since(created).Round(10*time.Millisecond))
		assert.Equal(t, realNode, pod.Spec.NodeName, "scheduled onto the real node")
		assert.NotEmpty(t, pod.OwnerReferences, "owned by its ReplicaSet")
		rs, err := cs.AppsV1().ReplicaSets("workloads").List(ctx, metav1.ListOptions{LabelSelector: "app=steady"})
		require.NoError(t, err)
		require.Len(t, rs.Items, 1)

		require.NoError(t, cs.AppsV1().Deployments("workloads").Delete(ctx, "steady", metav1.DeleteOptions{}))
		deleted := time.Now()
		require.Eventually(t, func() bool {
			rs, err := cs.AppsV1().ReplicaSets("workloads").List(ctx, metav1.ListOptions{LabelSelector: "app=steady"})
			if err != nil || len(rs.Items) > 0 {
				return false
			}
			pods, err := cs.CoreV1().Pods("workloads").List(ctx, metav1.ListOptions{LabelSelector: "app=steady"})
			return err == nil && len(pods.Items) == 0
		}, 2*time.Minute, 200*time.Millisecond, "the ReplicaSet or its pod outlived the Deployment")
		t.Logf("deployment deleted to ReplicaSet and pod gone: %s", time.Since(deleted).Round(10*time.Millisecond))
	})

	t.Run("daemonset runs on the real node only", func(t *testing.T) {
		labels := map[string]string{"app": "per-node"}
		_, err := cs.AppsV1().DaemonSets("workloads").Create(ctx, &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "per-node", Namespace: "workloads"},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: workloadSpec(corev1.RestartPolicyAlways, nil)},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		pod := waitPod(ctx, t, cs, "workloads", "app=per-node", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodRunning
		})
		assert.Equal(t, realNode, pod.Spec.NodeName)
		ds, err := cs.AppsV1().DaemonSets("workloads").Get(ctx, "per-node", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, int32(1), ds.Status.DesiredNumberScheduled, "the stand-in's taint keeps the DaemonSet off it")
		require.NoError(t, cs.AppsV1().DaemonSets("workloads").Delete(ctx, "per-node", metav1.DeleteOptions{}))
	})

	t.Run("job completes", func(t *testing.T) {
		_, err := cs.BatchV1().Jobs("workloads").Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: "workloads"},
			Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](0),
				Template: corev1.PodTemplateSpec{Spec: workloadSpec(corev1.RestartPolicyNever, map[string]string{
					"WORKLOAD_MODE": "exit", "WORKLOAD_EXIT_AFTER": "1s", "WORKLOAD_EXIT_CODE": "0",
				})},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		var finished batchv1.JobCondition
		require.Eventually(t, func() bool {
			job, err := cs.BatchV1().Jobs("workloads").Get(ctx, "once", metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, cond := range job.Status.Conditions {
				if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
					finished = cond
					return true
				}
			}
			return false
		}, 2*time.Minute, 200*time.Millisecond, "the job did not finish")
		assert.Equal(t, batchv1.JobComplete, finished.Type, "%s: %s", finished.Reason, finished.Message)
	})

	t.Run("stand-in node stays Ready past the grace period", func(t *testing.T) {
		// The node lifecycle controller marks a node without heartbeat Unknown after 50 s and
		// looks every 5 s; a margin of 10 s more.
		if wait := 65*time.Second - time.Since(began); wait > 0 {
			t.Logf("waiting %s, until the node lifecycle controller would have given up on the stand-in", wait.Round(time.Second))
			time.Sleep(wait)
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, "oomwatch-standin", metav1.GetOptions{})
		require.NoError(t, err)
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				assert.Equal(t, corev1.ConditionTrue, cond.Status, "%s: %s", cond.Reason, cond.Message)
			}
		}
		require.Len(t, node.Spec.Taints, 1, "only its own taint: %v", node.Spec.Taints)
		assert.Equal(t, standinTaintKey, node.Spec.Taints[0].Key)
		lease, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "oomwatch-standin", metav1.GetOptions{})
		require.NoError(t, err)
		require.NotNil(t, lease.Spec.RenewTime)
		assert.WithinDuration(t, time.Now(), lease.Spec.RenewTime.Time, 20*time.Second, "the Lease is renewed")
		pod, err := cs.CoreV1().Pods("workloads").Get(ctx, standinPod.Name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, standinPod.ResourceVersion, pod.ResourceVersion, "nothing wrote the stand-in's pod: %+v", pod.Status.Conditions)
	})

	require.NoError(t, c.Stop(ctx))
}

// workloadSpec is a pod of the workload image on the host network, holding 8 MiB.
func workloadSpec(restart corev1.RestartPolicy, env map[string]string) corev1.PodSpec {
	container := corev1.Container{
		Name:            "app",
		Image:           testworkload.WorkloadImage,
		ImagePullPolicy: corev1.PullNever,
		Env:             []corev1.EnvVar{{Name: "WORKLOAD_MB", Value: "8"}},
		Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
	}
	for k, v := range env {
		container.Env = append(container.Env, corev1.EnvVar{Name: k, Value: v})
	}
	return corev1.PodSpec{
		HostNetwork:                   true,
		RestartPolicy:                 restart,
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers:                    []corev1.Container{container},
	}
}

// waitPod waits for the one pod of selector and for ok to hold for it.
func waitPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, selector string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	require.Eventually(t, func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil || len(pods.Items) != 1 {
			return false
		}
		pod = &pods.Items[0]
		return ok(pod)
	}, 2*time.Minute, 200*time.Millisecond, "no pod of %s as expected", selector)
	return pod
}

// writtenStandinPod binds a pod to the stand-in node and writes a Running, Ready status for it.
func writtenStandinPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) *corev1.Pod {
	t.Helper()
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "written"},
		Spec: corev1.PodSpec{
			NodeName:   "oomwatch-standin",
			Containers: []corev1.Container{{Name: "app", Image: testworkload.WorkloadImage}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Image: testworkload.WorkloadImage, Ready: true, ContainerID: "containerd://written-0",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	pod, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	return pod
}
