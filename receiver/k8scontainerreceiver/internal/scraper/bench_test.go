// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/receiver/receivertest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/slimpod"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

// realisticPod is a Deployment's pod as the API server sends it: managed fields, the
// last-applied annotation, environment, probes, volumes, conditions and three containers,
// one of them OOM-killed twice.
func realisticPod(i int) *corev1.Pod {
	name := fmt.Sprintf("checkout-7d9f8b6c5-%05d", i)
	uid := types.UID(fmt.Sprintf("8c1f6d2e-0000-4000-8000-%012d", i))
	res := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceCPU: resource.MustParse("500m")},
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
	}
	var containers []corev1.Container
	var statuses []corev1.ContainerStatus
	for c, cname := range []string{"app", "sidecar", "metrics"} {
		var env []corev1.EnvVar
		for e := range 12 {
			env = append(env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", e), Value: fmt.Sprintf("value-%d-%d", e, i)})
		}
		containers = append(containers, corev1.Container{
			Name:      cname,
			Image:     fmt.Sprintf("registry.example.com/shop/%s:v1.42.%d", cname, c),
			Args:      []string{"--listen=:8080", "--log-level=info"},
			Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: int32(8080 + c), Protocol: corev1.ProtocolTCP}},
			Env:       env,
			Resources: res,
			VolumeMounts: []corev1.VolumeMount{
				{Name: "config", MountPath: "/etc/app"},
				{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
			},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromInt32(int32(8080 + c)),
			}}, PeriodSeconds: 10},
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
		})
		s := corev1.ContainerStatus{
			Name:         cname,
			Image:        containers[c].Image,
			ImageID:      "registry.example.com/shop/" + cname + "@sha256:" + strings.Repeat("ab", 32),
			ContainerID:  fmt.Sprintf("containerd://%064d", i*10+c),
			Ready:        true,
			RestartCount: int32(2 * c),
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Unix(1_700_000_000, 0)}},
			Resources:    &res,
		}
		if c > 0 {
			s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "OOMKilled", StartedAt: metav1.Unix(1_699_999_000, 0), FinishedAt: metav1.Unix(1_699_999_900, 0),
				ContainerID: fmt.Sprintf("containerd://%064d", i*10+c+5),
			}
		}
		statuses = append(statuses, s)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "shop", UID: uid, ResourceVersion: fmt.Sprint(1000 + i), GenerateName: "checkout-7d9f8b6c5-",
			CreationTimestamp: metav1.Unix(1_699_000_000, 0),
			Labels: map[string]string{
				"app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8b6c5",
			},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-11-01T10:00:00Z",
				"prometheus.io/scrape":              "true",
				"prometheus.io/port":                "9090",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "checkout-7d9f8b6c5", UID: "rs-uid"}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
					FieldsV1: metav1.NewFieldsV1(strings.Repeat(`{"f:metadata":{"f:labels":{}}}`, 40))},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: metav1.NewFieldsV1(strings.Repeat(`{"f:status":{"f:conditions":{}}}`, 40))},
			},
		},
		Spec: corev1.PodSpec{
			NodeName:           fmt.Sprintf("node-%03d", i%100),
			ServiceAccountName: "checkout",
			Containers:         containers,
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "checkout"}}}},
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
				}}}},
			},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			},
			HostIP: "10.0.1.17", PodIP: fmt.Sprintf("10.244.%d.%d", i/250, i%250), QOSClass: corev1.PodQOSBurstable,
			StartTime:         &metav1.Time{Time: time.Unix(1_699_000_000, 0)},
			ContainerStatuses: statuses,
		},
	}
}

// BenchmarkScrape is one scrape of a full node: 110 pods with 3 containers each, stats
// from the kubelet test server over TLS (request, JSON decoding and metric building).
func BenchmarkScrape(b *testing.B) {
	const pods = 110
	k := kubelettest.New(b)
	var podStats []stats.PodStats
	cfg := NewDefaultConfig()
	cfg.Node = podtest.Node
	cfg.Kubelet.Endpoint = k.Endpoint()
	cfg.Kubelet.AuthType = "none"
	cfg.Kubelet.CAFile = k.WriteCA(b, b.TempDir())
	s, err := New(receivertest.NewNopSettings(metadata.Type), cfg, Deps{
		Connect: func(*Config) (kubernetes.Interface, *rest.Config, error) { return nil, &rest.Config{}, nil },
		Now:     time.Now,
	})
	require.NoError(b, err)
	s.kubelet, err = newKubeletClient(cfg, "", &rest.Config{})
	require.NoError(b, err)
	s.endpoint = cfg.Kubelet.Endpoint
	defer s.kubelet.Close()
	for i := range pods {
		p := slimpod.Slim(realisticPod(i), nil, nil)
		s.tracker.Upsert(p, time.Now())
		var cs []stats.ContainerStats
		for _, c := range p.Containers {
			cs = append(cs, kubelettest.Container(c.Name, podtest.T0, podtest.T0, kubelettest.Usage{WorkingSet: 100 << 20, PageFaults: 10}))
		}
		podStats = append(podStats, kubelettest.Pod(p.Namespace, p.Name, string(p.UID), podtest.T0, cs...))
	}
	k.SetSummary(kubelettest.Summary(podtest.Node, podStats...))
	ctx := context.Background()

	b.ReportAllocs()
	for b.Loop() {
		md, err := s.Scrape(ctx)
		if err != nil || md.ResourceMetrics().Len() != pods*3 {
			b.Fatalf("%d resources, %v", md.ResourceMetrics().Len(), err)
		}
	}
}

// BenchmarkInformerCacheMemory fills an informer's store with 10k pods, through the
// receiver's transform or as they come, and reports the heap kept per pod.
func BenchmarkInformerCacheMemory(b *testing.B) {
	const pods = 10_000
	for _, bc := range []struct {
		name      string
		transform cache.TransformFunc
	}{
		{"full", func(obj any) (any, error) { return obj, nil }},
		{"slim", slimpod.Transform([]string{"app.kubernetes.io/name"}, nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var perPod float64
			for b.Loop() {
				b.StopTimer()
				before := heapInUse()
				b.StartTimer()
				store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
				for i := range pods {
					obj, err := bc.transform(realisticPod(i))
					if err != nil {
						b.Fatal(err)
					}
					if err := store.Add(obj); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if len(store.ListKeys()) != pods {
					b.Fatalf("%d pods in the store", len(store.ListKeys()))
				}
				perPod = float64(heapInUse()-before) / pods
				runtime.KeepAlive(store)
				b.StartTimer()
			}
			b.ReportMetric(perPod, "B/pod")
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
