// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package trajectory_test

// What the Tracker costs: the bytes it keeps per container, and the time of Add and Explain.
// The Tracker belongs to one goroutine, so its benchmarks have no parallel variant.

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
)

// containerKey names a container as the receiver does: its pod's UID and its name.
type containerKey struct{ podUID, container string }

// TestBytesPerContainer measures the heap a Tracker keeps per container, over 10,000 containers
// sampled every 10 s for longer than the max age: with the window of one instance, then with
// the windows of two in the scrapes after a restart. The keys and instance names belong to the caller and are
// made before the measure.
func TestBytesPerContainer(t *testing.T) {
	const containers = 10000
	keys := make([]containerKey, containers)
	first, second := make([]string, containers), make([]string, containers)
	for i := range keys {
		keys[i] = containerKey{fmt.Sprintf("6b0c1d1e-2f3a-4b5c-8d9e-%012d", i), "app"}
		first[i] = fmt.Sprintf("containerd://%064x", 2*i)
		second[i] = fmt.Sprintf("containerd://%064x", 2*i+1)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := trajectory.New[containerKey](trajectory.Options{})
	scrape := func(instances []string, d time.Duration) {
		for i, k := range keys {
			tr.Add(k, instances[i], trajectory.Sample{Bytes: int64(i) << 20, At: at(d)})
		}
		tr.EndScrape()
	}
	var d time.Duration
	for ; d < 2*trajectory.DefaultMaxAge; d += 10 * time.Second {
		scrape(first, d)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	one := float64(after.HeapAlloc-before.HeapAlloc) / containers
	for range trajectory.DefaultKeepScrapes {
		scrape(second, d)
		d += 10 * time.Second
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	two := float64(after.HeapAlloc-before.HeapAlloc) / containers
	runtime.KeepAlive(tr)
	runtime.KeepAlive(keys)
	runtime.KeepAlive(first)
	runtime.KeepAlive(second)
	t.Logf("bytes per container: %.0f with one window, %.0f with two", one, two)
	assert.Less(t, one, 1024.0)
	assert.Less(t, two, 1536.0)
}

// BenchmarkAdd adds one sample to one of 1,000 containers whose windows are full: every 10 s
// the oldest ages out, every 1 s the window thins.
func BenchmarkAdd(b *testing.B) {
	for _, every := range []time.Duration{10 * time.Second, time.Second} {
		b.Run(fmt.Sprint("every=", every), func(b *testing.B) {
			const containers = 1000
			tr := trajectory.New[int](trajectory.Options{})
			var d time.Duration
			for ; d < 2*trajectory.DefaultMaxAge; d += every {
				for k := range containers {
					tr.Add(k, "1", trajectory.Sample{Bytes: int64(d / time.Millisecond), At: at(d)})
				}
			}
			k := 0
			for b.Loop() {
				tr.Add(k, "1", trajectory.Sample{Bytes: int64(d / time.Millisecond), At: at(d)})
				if k++; k == containers {
					k, d = 0, d+every
				}
			}
			got, ok := tr.Explain(0, "1", 1<<40, at(d+every))
			require.True(b, ok)
			require.LessOrEqual(b, got.Samples, trajectory.DefaultMaxSamples)
		})
	}
}

// BenchmarkExplain explains the kill of a container whose full window climbed to its limit.
func BenchmarkExplain(b *testing.B) {
	tr := trajectory.New[int](trajectory.Options{})
	for d := time.Duration(0); d < trajectory.DefaultMaxAge; d += 10 * time.Second {
		tr.Add(0, "1", trajectory.Sample{Bytes: percent(40 + 58*float64(d)/float64(trajectory.DefaultMaxAge)), At: at(d)})
	}
	killed := at(trajectory.DefaultMaxAge)
	var got trajectory.Trajectory
	for b.Loop() {
		got, _ = tr.Explain(0, "1", limit, killed)
	}
	require.Equal(b, 30, got.Samples)
	require.Equal(b, trajectory.SlowGrowth, got.Class)
}

// BenchmarkEndScrape ends a scrape of 10,000 containers, none of them due to be dropped.
func BenchmarkEndScrape(b *testing.B) {
	const containers = 10000
	tr := trajectory.New[int](trajectory.Options{KeepScrapes: 1 << 62})
	for k := range containers {
		tr.Add(k, "1", trajectory.Sample{Bytes: 1, At: at(0)})
	}
	for b.Loop() {
		tr.EndScrape()
	}
	_, ok := tr.Explain(containers-1, "1", limit, at(time.Second))
	require.True(b, ok)
}
