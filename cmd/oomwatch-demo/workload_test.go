package main

import (
	"bytes"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/oomwatch/oomwatch/internal/testworkload"
)

var workloadModes = []string{"steady", "leak", "spiky", "child-oom", "exit"}

// TestWorkloadPodsAreValid checks what the API server and the kubelet would refuse, or what
// would make a pod never start here: names, a node, the local image that is never pulled, a
// memory limit, known workload modes. Each pod also survives a strict round trip through the
// API's own serialization.
func TestWorkloadPodsAreValid(t *testing.T) {
	t.Parallel()
	pods := workloadPods("oomwatch-node")
	require.NotEmpty(t, pods)
	seen := map[string]bool{}
	for _, p := range pods {
		id := p.Namespace + "/" + p.Name
		assert.False(t, seen[id], "%s twice", id)
		seen[id] = true
		assert.Empty(t, validation.IsDNS1123Subdomain(p.Name), id)
		assert.Empty(t, validation.IsDNS1123Label(p.Namespace), id)
		assert.Contains(t, workloadNamespaces, p.Namespace, id)
		for k, v := range p.Labels {
			assert.Empty(t, validation.IsQualifiedName(k), "%s label %s", id, k)
			assert.Empty(t, validation.IsValidLabelValue(v), "%s label %s", id, k)
		}
		assert.Equal(t, "oomwatch-node", p.Spec.NodeName, "%s: no scheduler runs", id)
		assert.True(t, p.Spec.HostNetwork, "%s: the node's network is loopback only", id)
		assert.Contains(t, []corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyNever}, p.Spec.RestartPolicy, id)

		names := map[string]bool{}
		for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
			cid := id + "/" + c.Name
			assert.False(t, names[c.Name], "%s twice", cid)
			names[c.Name] = true
			assert.Empty(t, validation.IsDNS1123Label(c.Name), cid)
			assert.Equal(t, testworkload.WorkloadImage, c.Image, cid)
			assert.Equal(t, corev1.PullNever, c.ImagePullPolicy, "%s: no registry is reachable", cid)
			limit, ok := c.Resources.Limits[corev1.ResourceMemory]
			require.True(t, ok, "%s has no memory limit", cid)
			assert.Positive(t, limit.Cmp(resource.MustParse("16Mi")), cid)
			request := c.Resources.Requests[corev1.ResourceMemory]
			assert.LessOrEqual(t, request.Cmp(limit), 0, "%s: request above limit", cid)
			assert.Contains(t, workloadModes, envOf(c, "WORKLOAD_MODE"), cid)
		}

		var buf bytes.Buffer
		ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true, Strict: true})
		require.NoError(t, ser.Encode(p, &buf), id)
		obj, _, err := ser.Decode(buf.Bytes(), nil, nil)
		require.NoError(t, err, id)
		assert.Equal(t, p, obj, "%s does not round-trip", id)
	}
}

// TestWorkloadCoversEveryKindOfOOMKill makes sure the demo shows what it says it shows.
func TestWorkloadCoversEveryKindOfOOMKill(t *testing.T) {
	t.Parallel()
	var restartedLeak, initLeak, neverLeak, childOOM, steady int
	for _, p := range workloadPods("n") {
		for _, c := range p.Spec.InitContainers {
			if envOf(c, "WORKLOAD_MODE") == "leak" {
				initLeak++
			}
		}
		for _, c := range p.Spec.Containers {
			switch mode := envOf(c, "WORKLOAD_MODE"); {
			case mode == "leak" && p.Spec.RestartPolicy == corev1.RestartPolicyAlways:
				restartedLeak++
			case mode == "leak" && p.Spec.RestartPolicy == corev1.RestartPolicyNever:
				neverLeak++
			case mode == "child-oom":
				childOOM++
			case mode == "steady":
				steady++
			}
		}
	}
	assert.Equal(t, 1, restartedLeak, "a container OOM-killed again and again through the back-off")
	assert.Equal(t, 1, initLeak, "an init container that OOMs")
	assert.Equal(t, 1, neverLeak, "a Job's pod with restartPolicy Never that OOMs")
	assert.Equal(t, 1, childOOM, "child processes OOM-killed while PID 1 lives")
	assert.Positive(t, steady, "containers that are never killed")
}

// TestSpikyStaysUnderItsLimit: a spiky container holds its base, the previous spike (kept until
// the next one replaces it) and the new spike at its peak; the demo means it to swing towards its
// limit, not to be killed.
func TestSpikyStaysUnderItsLimit(t *testing.T) {
	t.Parallel()
	for _, p := range workloadPods("n") {
		for _, c := range p.Spec.Containers {
			if envOf(c, "WORKLOAD_MODE") != "spiky" {
				continue
			}
			base := resource.MustParse(envOf(c, "WORKLOAD_MB") + "Mi")
			spike := resource.MustParse(envOf(c, "WORKLOAD_SPIKE_MB") + "Mi")
			peak := base.Value() + 2*spike.Value() + 16<<20 // 16 MiB for the Go runtime
			limit := c.Resources.Limits[corev1.ResourceMemory]
			assert.Less(t, peak, limit.Value(), "%s/%s/%s", p.Namespace, p.Name, c.Name)
		}
	}
}

func envOf(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func TestFreePorts(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(4)
	require.NoError(t, err)
	require.Len(t, ports, 4)
	slices.Sort(ports)
	assert.Len(t, slices.Compact(ports), 4)
}
