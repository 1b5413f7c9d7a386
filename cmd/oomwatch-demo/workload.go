package main

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomwatch/oomwatch/internal/testworkload"
)

// The local cluster runs no controller-manager and no scheduler, so nothing would turn a
// Deployment or a Job into pods. The demo creates the pods those controllers would create, bound
// to the node, with the labels they would carry.

// workloadNamespaces are the namespaces the demo's pods live in.
var workloadNamespaces = []string{"demo-shop", "demo-payments", "demo-batch"}

// container describes one container of a demo pod.
type container struct {
	name  string
	limit string // memory limit, e.g. "64Mi"
	env   map[string]string
}

// leaking containers grow by 4 MiB every 250 ms until the kernel OOM-kills them.
var leaking = map[string]string{"WORKLOAD_MODE": "leak", "WORKLOAD_STEP_MB": "4", "WORKLOAD_INTERVAL": "250ms"}

// workloadPods returns the demo's pods, all bound to node.
func workloadPods(node string) []*corev1.Pod {
	return []*corev1.Pod{
		// A steady web server: well under its limit, never killed.
		demoPod(node, "demo-shop", "frontend", deploymentLabels("frontend"), corev1.RestartPolicyAlways, nil,
			container{name: "web", limit: "64Mi", env: map[string]string{"WORKLOAD_MODE": "steady", "WORKLOAD_MB": "24"}}),
		// A spiky service with a sidecar: its working set swings towards the limit and back. The
		// workload keeps a spike referenced until the next one replaces it, so the peak is the
		// base plus two spikes; the limit leaves room for that.
		demoPod(node, "demo-shop", "cart", deploymentLabels("cart"), corev1.RestartPolicyAlways, nil,
			container{name: "app", limit: "128Mi", env: map[string]string{
				"WORKLOAD_MODE": "spiky", "WORKLOAD_MB": "24", "WORKLOAD_SPIKE_MB": "32",
				"WORKLOAD_INTERVAL": "3s", "WORKLOAD_SPIKE_FOR": "2s",
			}},
			container{name: "proxy", limit: "32Mi", env: map[string]string{"WORKLOAD_MODE": "steady", "WORKLOAD_MB": "8"}}),
		// A leak: OOM-killed a few seconds after each start, restarted through the back-off.
		demoPod(node, "demo-payments", "ledger", deploymentLabels("ledger"), corev1.RestartPolicyAlways, nil,
			container{name: "app", limit: "64Mi", env: leaking}),
		// An init container that runs out of memory: the pod never gets to its app container, and
		// the init container is retried through the back-off.
		demoPod(node, "demo-payments", "accounts", deploymentLabels("accounts"), corev1.RestartPolicyAlways,
			[]container{{name: "migrate", limit: "48Mi", env: leaking}},
			container{name: "app", limit: "64Mi", env: map[string]string{"WORKLOAD_MODE": "steady", "WORKLOAD_MB": "16"}}),
		// A Job's pod with restartPolicy Never: one OOM kill, then the pod has failed for good.
		demoPod(node, "demo-batch", "nightly-report", map[string]string{"job-name": "nightly-report", "batch.kubernetes.io/job-name": "nightly-report"},
			corev1.RestartPolicyNever, nil,
			container{name: "report", limit: "48Mi", env: leaking}),
		// Child processes OOM-killed while PID 1 lives: the container never restarts, and the pod
		// status never shows these kills.
		demoPod(node, "demo-batch", "thumbnailer", deploymentLabels("thumbnailer"), corev1.RestartPolicyAlways, nil,
			container{name: "resize", limit: "64Mi", env: map[string]string{"WORKLOAD_MODE": "child-oom", "WORKLOAD_STEP_MB": "4", "WORKLOAD_INTERVAL": "250ms"}}),
	}
}

func deploymentLabels(app string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": app}
}

func demoPod(node, ns, name string, labels map[string]string, restart corev1.RestartPolicy, inits []container, containers ...container) *corev1.Pod {
	noToken := false
	grace := int64(1)
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true, // the node has a loopback-only network
			RestartPolicy:                 restart,
			AutomountServiceAccountToken:  &noToken,
			TerminationGracePeriodSeconds: &grace,
		},
	}
	for _, c := range inits {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, c.spec())
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, c.spec())
	}
	return pod
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
