// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"

	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
)

var workloadModes = []string{"steady", "leak", "spiky", "child-oom", "exit"}

// namedTemplate is the pod template of one of the demo's Deployments or Jobs.
type namedTemplate struct {
	id string // namespace/name
	corev1.PodTemplateSpec
}

func (w workload) templates() []namedTemplate {
	var out []namedTemplate
	for _, d := range w.Deployments {
		out = append(out, namedTemplate{d.Namespace + "/" + d.Name, d.Spec.Template})
	}
	for _, j := range w.Jobs {
		out = append(out, namedTemplate{j.Namespace + "/" + j.Name, j.Spec.Template})
	}
	return out
}

// TestWorkloadIsValid checks what the API server, the controllers or the kubelet would refuse,
// or what would make a pod never start here: names, a Deployment's selector that does not
// select its own pods, the local image that is never pulled, a memory limit, known workload
// modes. Each object also survives a strict round trip through the API's own serialization.
func TestWorkloadIsValid(t *testing.T) {
	t.Parallel()
	w := demoWorkload()
	require.NotEmpty(t, w.Deployments)
	require.NotEmpty(t, w.Jobs)
	seen := map[string]bool{}
	objects := map[string]runtime.Object{}
	for _, d := range w.Deployments {
		id := d.Namespace + "/" + d.Name
		objects[id] = d
		assert.Equal(t, int32(1), ptr.Deref(d.Spec.Replicas, 0), id)
		selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		require.NoError(t, err, id)
		assert.False(t, selector.Empty(), id)
		assert.True(t, selector.Matches(labels.Set(d.Spec.Template.Labels)), "%s: the selector misses its own pods", id)
		assert.Equal(t, corev1.RestartPolicyAlways, d.Spec.Template.Spec.RestartPolicy, id)
	}
	for _, j := range w.Jobs {
		id := j.Namespace + "/" + j.Name
		objects[id] = j
		assert.Nil(t, j.Spec.Selector, "%s: the Job controller makes its own", id)
		assert.Equal(t, corev1.RestartPolicyNever, j.Spec.Template.Spec.RestartPolicy, id)
	}
	for _, tmpl := range w.templates() {
		id := tmpl.id
		assert.False(t, seen[id], "%s twice", id)
		seen[id] = true
		ns, name, _ := strings.Cut(id, "/")
		// A Job's name is also a label value of its pods.
		assert.Empty(t, validation.IsDNS1123Label(name), id)
		assert.Empty(t, validation.IsDNS1123Label(ns), id)
		assert.Contains(t, workloadNamespaces, ns, id)
		for k, v := range tmpl.Labels {
			assert.Empty(t, validation.IsQualifiedName(k), "%s label %s", id, k)
			assert.Empty(t, validation.IsValidLabelValue(v), "%s label %s", id, k)
		}
		assert.Empty(t, tmpl.Spec.NodeName, "%s: the scheduler places it", id)
		assert.Empty(t, tmpl.Spec.NodeSelector, "%s: the demo's cluster has one node", id)
		assert.True(t, tmpl.Spec.HostNetwork, "%s: the node's network is loopback only", id)

		names := map[string]bool{}
		for _, c := range slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers) {
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
	}

	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true, Strict: true})
	for id, obj := range objects {
		var buf bytes.Buffer
		require.NoError(t, ser.Encode(obj, &buf), id)
		back, _, err := ser.Decode(buf.Bytes(), nil, nil)
		require.NoError(t, err, id)
		assert.Equal(t, obj, back, "%s does not round-trip", id)
	}
}

// TestJobFailsOnItsFirstKill: with no retry, the Job's one pod is OOM-killed once and the Job
// has failed; a retry would be a new pod, and a second kill.
func TestJobFailsOnItsFirstKill(t *testing.T) {
	t.Parallel()
	for _, j := range demoWorkload().Jobs {
		assert.Equal(t, int32(0), ptr.Deref(j.Spec.BackoffLimit, -1), "%s/%s", j.Namespace, j.Name)
	}
}

// TestWorkloadCoversEveryKindOfOOMKill makes sure the demo shows what it says it shows.
func TestWorkloadCoversEveryKindOfOOMKill(t *testing.T) {
	t.Parallel()
	var restartedLeak, initLeak, neverLeak, childOOM, steady int
	for _, tmpl := range demoWorkload().templates() {
		for _, c := range tmpl.Spec.InitContainers {
			if envOf(c, "WORKLOAD_MODE") == "leak" {
				initLeak++
			}
		}
		for _, c := range tmpl.Spec.Containers {
			switch mode := envOf(c, "WORKLOAD_MODE"); {
			case mode == "leak" && tmpl.Spec.RestartPolicy == corev1.RestartPolicyAlways:
				restartedLeak++
			case mode == "leak" && tmpl.Spec.RestartPolicy == corev1.RestartPolicyNever:
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
	for _, tmpl := range demoWorkload().templates() {
		for _, c := range tmpl.Spec.Containers {
			if envOf(c, "WORKLOAD_MODE") != "spiky" {
				continue
			}
			base := resource.MustParse(envOf(c, "WORKLOAD_MB") + "Mi")
			spike := resource.MustParse(envOf(c, "WORKLOAD_SPIKE_MB") + "Mi")
			peak := base.Value() + 2*spike.Value() + 16<<20 // 16 MiB for the Go runtime
			limit := c.Resources.Limits[corev1.ResourceMemory]
			assert.Less(t, peak, limit.Value(), "%s/%s", tmpl.id, c.Name)
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
