// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package identity

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func attrs(kv ...any) pcommon.Map {
	m := pcommon.NewMap()
	for i := 0; i < len(kv); i += 2 {
		if err := m.PutEmpty(kv[i].(string)).FromRaw(kv[i+1]); err != nil {
			panic(err)
		}
	}
	return m
}

func TestMapIgnoresOrder(t *testing.T) {
	t.Parallel()
	var h Hasher
	a := h.Map(attrs("k8s.pod.name", "web", "k8s.namespace.name", "prod"), "")
	b := h.Map(attrs("k8s.namespace.name", "prod", "k8s.pod.name", "web"), "")
	assert.Equal(t, a, b)
}

func TestMapSkipsOccurrence(t *testing.T) {
	t.Parallel()
	var h Hasher
	with := h.Map(attrs("k8s.container.restart_count", int64(3), "x", "y"), "k8s.container.restart_count")
	other := h.Map(attrs("k8s.container.restart_count", int64(4), "x", "y"), "k8s.container.restart_count")
	without := h.Map(attrs("x", "y"), "")
	assert.Equal(t, with, other)
	assert.Equal(t, with, without)
}

func TestSelectHashesOnlyTheNamedAttributes(t *testing.T) {
	t.Parallel()
	var h Hasher
	ids := []string{"k8s.pod.uid", "k8s.container.name", "k8s.namespace.name"}
	a := h.Select(attrs("k8s.pod.uid", "u1", "k8s.container.name", "app", "container.id", "c1", "team", "a"), ids)
	b := h.Select(attrs("container.id", "c2", "k8s.container.name", "app", "k8s.pod.uid", "u1"), ids)
	assert.Equal(t, a, b, "attributes not named do not change the key")
	assert.Equal(t, h.Map(attrs("k8s.pod.uid", "u1", "k8s.container.name", "app"), ""), a, "Select hashes as Map over the named attributes")
	assert.NotEqual(t, a, h.Select(attrs("k8s.pod.uid", "u2", "k8s.container.name", "app"), ids))
}

func TestSelectDoesNotAllocate(t *testing.T) {
	m := attrs("k8s.namespace.name", "prod", "k8s.pod.name", "web-0", "k8s.pod.uid", "u1", "k8s.container.name", "app", "container.id", "c1")
	ids := []string{"k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.container.name"}
	var h Hasher
	allocs := testing.AllocsPerRun(100, func() { _ = h.Select(m, ids) })
	assert.Zero(t, allocs)
}

func TestDistinctInputsGiveDistinctKeys(t *testing.T) {
	t.Parallel()
	var h Hasher
	cases := []pcommon.Map{
		attrs(),
		attrs("a", "1"),
		attrs("a", int64(1)),
		attrs("a", 1.0),
		attrs("a", true),
		attrs("a", []byte("1")),
		attrs("a", map[string]any{"b": "1"}),
		attrs("a", []any{"1"}),
		attrs("ab", "c"),
		attrs("a", "bc"),
		attrs("a", "1", "b", "2"),
		attrs("a", "2", "b", "1"),
		attrs("a", "1", "b", "1"),
	}
	seen := map[Key]int{}
	for i, m := range cases {
		k := h.Map(m, "")
		if j, dup := seen[k]; dup {
			t.Fatalf("case %d and %d share key %v", i, j, k)
		}
		seen[k] = i
	}
}

func TestSeriesSeparatesEveryPart(t *testing.T) {
	t.Parallel()
	var h Hasher
	r1 := h.Map(attrs("k8s.pod.uid", "u1"), "")
	r2 := h.Map(attrs("k8s.pod.uid", "u2"), "")
	s := pcommon.NewInstrumentationScope()
	s.SetName("scope")
	sc := h.Scope(s)
	none := h.Map(attrs(), "")
	base := Series(h.Metric(r1, sc, "k8s.container.oom_kills"), none)
	assert.NotEqual(t, base, Series(h.Metric(r2, sc, "k8s.container.oom_kills"), none), "pod uid")
	assert.NotEqual(t, base, Series(h.Metric(r1, Key{}, "k8s.container.oom_kills"), none), "scope")
	assert.NotEqual(t, base, Series(h.Metric(r1, sc, "other"), none), "metric")
	assert.NotEqual(t, base, Series(h.Metric(r1, sc, "k8s.container.oom_kills"), r2), "attributes")
	assert.Equal(t, base, Series(h.Metric(r1, sc, "k8s.container.oom_kills"), none), "stable")
}

func TestKeysAreStableAcrossProcesses(t *testing.T) {
	t.Parallel()
	// Persisted state is looked up by key after a restart: a change of the hashing scheme must be
	// a deliberate, versioned change of the checkpoint format, so the expected value is pinned.
	var h Hasher
	r := h.Map(attrs("k8s.namespace.name", "prod", "k8s.pod.uid", "u1"), "")
	k := Series(h.Metric(r, h.Scope(pcommon.NewInstrumentationScope()), "k8s.container.oom_kills"), h.Map(attrs(), ""))
	assert.Equal(t, Key{Hi: 10581077182105454862, Lo: 13031002572425449153}, k)
}

func TestMapDoesNotAllocate(t *testing.T) {
	m := attrs("k8s.namespace.name", "prod", "k8s.pod.name", "web-0", "k8s.container.restart_count", int64(2))
	var h Hasher
	allocs := testing.AllocsPerRun(100, func() {
		_ = Series(h.Metric(Key{1, 2}, Key{3, 4}, "k8s.container.oom_kills"), h.Map(m, "k8s.container.restart_count"))
	})
	assert.Zero(t, allocs)
}

func BenchmarkSeriesKey(b *testing.B) {
	m := attrs("k8s.container.restart_count", int64(2))
	r := attrs("k8s.namespace.name", "prod", "k8s.pod.name", "web-0", "k8s.pod.uid", "0b8c6f5e-8a4e-4c55-9a43-6f1c1b1d2e3f", "k8s.container.name", "app", "k8s.node.name", "node-1")
	var h Hasher
	mk := h.Metric(h.Map(r, ""), Key{}, "k8s.container.oom_kills")
	b.ReportAllocs()
	for b.Loop() {
		_ = Series(mk, h.Map(m, "k8s.container.restart_count"))
	}
}

func TestLongValuesHashLikeShortOnes(t *testing.T) {
	t.Parallel()
	long := string(make([]byte, 2000))
	var h Hasher
	a := h.Map(attrs("k", long, "x", "1"), "")
	b := h.Map(attrs("x", "1", "k", long), "")
	c := h.Map(attrs("k", long+"!", "x", "1"), "")
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	// A short pair after a long one hashes as it would alone.
	assert.Equal(t, h.Map(attrs("x", "1"), ""), h.Map(attrs("x", "1"), ""))
}

// BenchmarkResourceKey: the identifying attributes of containers' resources, hashed once per
// resource, as the receiver sends them: one resource per container, pods of one namespace on one
// node.
func BenchmarkResourceKey(b *testing.B) {
	resources := make([]pcommon.Map, 1000)
	for i := range resources {
		resources[i] = attrs("k8s.namespace.name", "prod", "k8s.pod.name", fmt.Sprintf("web-%d", i/2), "k8s.pod.uid", fmt.Sprintf("0b8c6f5e-8a4e-4c55-9a43-%012x", i/2),
			"k8s.container.name", []string{"app", "sidecar"}[i%2], "k8s.node.name", "node-1", "container.id", fmt.Sprintf("containerd://%064x", i))
	}
	ids := []string{"k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.container.name", "k8s.node.name"}
	var h Hasher
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range resources {
			_ = h.Select(r, ids)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(resources)), "ns/resource")
}

// TestSelectReusesOnlyEqualValues: a value hashed under the same key just before is not hashed
// again; any other value, or the same value under another key, is.
func TestSelectReusesOnlyEqualValues(t *testing.T) {
	t.Parallel()
	ids := []string{"ns", "pod"}
	maps := []pcommon.Map{
		attrs("ns", "a", "pod", "p1"),
		attrs("ns", "a", "pod", "p2"),
		attrs("ns", "b", "pod", "p2"),
		attrs("ns", "a", "pod", int64(2)),
		attrs("pod", "p2"),
		attrs("ns", "a", "pod", "p1"),
	}
	var h Hasher
	for i, m := range maps {
		var fresh Hasher
		assert.Equal(t, fresh.Select(m, ids), h.Select(m, ids), "map %d", i)
	}
	var fresh Hasher
	m := attrs("ns", "a", "pod", "a")
	assert.Equal(t, fresh.Select(m, []string{"pod", "ns"}), h.Select(m, []string{"pod", "ns"}), "same values under other keys")
}
