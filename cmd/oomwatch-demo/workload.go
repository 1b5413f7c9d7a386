// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
)

// The demo runs what a user runs: Deployments and a Job. The controller-manager makes their
// pods and the scheduler places them on the node, so the collector sees the owners a real
// cluster gives pods and names each container's Deployment or Job.

// workloadNamespaces are the namespaces the demo's workloads live in.
var workloadNamespaces = []string{"demo-shop", "demo-payments", "demo-batch"}

// workload is everything the demo creates in those namespaces.
type workload struct {
	Deployments []*appsv1.Deployment
	Jobs        []*batchv1.Job
}

// container describes one container of a demo pod.
type container struct {
	name  string
	limit string // memory limit, e.g. "64Mi"
	env   map[string]string
}

// leaking containers grow by 4 MiB every 250 ms until the kernel OOM-kills them.
var leaking = map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_STEP_MB": "4", "WORKLOAD_INTERVAL": "250ms"}

// demoWorkload returns the demo's Deployments and Job.
func demoWorkload() workload {
	return workload{
		Deployments: []*appsv1.Deployment{
			// A steady web server: well under its limit, never killed.
			deployment("demo-shop", "frontend", nil,
				container{name: "web", limit: "64Mi", env: map[string]string{"WORKLOAD_MODE": "steady", "WORKLOAD_MB": "24"}}),
			// A spiky service with a sidecar: its working set swings towards the limit and back.
			// The workload keeps a spike referenced until the next one replaces it, so the peak
			// is the base plus two spikes; the limit leaves room for that.
			deployment("demo-shop", "cart", nil,
				container{name: "app", limit: "128Mi", env: map[string]string{
					"WORKLOAD_MODE": "spiky", "WORKLOAD_MB": "24", "WORKLOAD_SPIKE_MB": "32",
					"WORKLOAD_INTERVAL": "3s", "WORKLOAD_SPIKE_FOR": "2s",
				}},
				container{name: "proxy", limit: "32Mi", env: map[string]string{"WORKLOAD_MODE": "steady", "WORKLOAD_MB": "8"}}),
			// A leak: OOM-killed a few seconds after each start, restarted through the back-off.
			deployment("demo-payments", "ledger", nil,
				container{name: "app", limit: "64Mi", env: leaking}),
			// An init container that runs out of memory: the pod never gets to its app
			// container, and the init container is retried through the back-off.
			deployment("demo-payments", "accounts", []container{{name: "migrate", limit: "48Mi", env: leaking}},
				container{name: "app", limit: "64Mi", env: map[string]string{"WORKLOAD_MODE": "steady", "WORKLOAD_MB": "16"}}),
			// Child processes OOM-killed while PID 1 lives: the container never restarts, and
			// the pod status never shows these kills.
			deployment("demo-batch", "thumbnailer", nil,
				container{name: "resize", limit: "64Mi", env: map[string]string{"WORKLOAD_MODE": "child-oom", "WORKLOAD_STEP_MB": "4", "WORKLOAD_INTERVAL": "250ms"}}),
		},
		Jobs: []*batchv1.Job{
			// restartPolicy Never and no retry: one OOM kill, and the Job has failed for good.
			job("demo-batch", "nightly-report",
				container{name: "report", limit: "48Mi", env: leaking}),
		},
	}
}

// deployment returns a Deployment of one replica, its pods selected by their app name.
func deployment(ns, name string, inits []container, containers ...container) *appsv1.Deployment {
	labels := appLabels(name)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, corev1.RestartPolicyAlways, inits, containers),
		},
	}
}

// job returns a Job whose one pod is never restarted nor replaced; the Job controller adds
// its own selector and pod labels.
func job(ns, name string, containers ...container) *batchv1.Job {
	labels := appLabels(name)
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template:     podTemplate(labels, corev1.RestartPolicyNever, nil, containers),
		},
	}
}

func appLabels(name string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": name}
}

// podTemplate has no nodeName: the scheduler places the pod.
func podTemplate(labels map[string]string, restart corev1.RestartPolicy, inits, containers []container) corev1.PodTemplateSpec {
	t := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			HostNetwork:                   true, // the node has a loopback-only network
			RestartPolicy:                 restart,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	for _, c := range inits {
		t.Spec.InitContainers = append(t.Spec.InitContainers, c.spec())
	}
	for _, c := range containers {
		t.Spec.Containers = append(t.Spec.Containers, c.spec())
	}
	return t
}

func (c container) spec() corev1.Container {
	limit := resource.MustParse(c.limit)
	out := corev1.Container{
		Name:            c.name,
		Image:           testworkload.WorkloadImage,
		ImagePullPolicy: corev1.PullNever, // no registry is reachable; the image is imported
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: limit},
			Requests: corev1.ResourceList{corev1.ResourceMemory: limit},
		},
	}
	for _, k := range slices.Sorted(maps.Keys(c.env)) {
		out.Env = append(out.Env, corev1.EnvVar{Name: k, Value: c.env[k]})
	}
	return out
}
