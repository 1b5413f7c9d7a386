// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kubelet

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	benchPods         = 110 // the kubelet's default pod limit
	benchContainers   = 3   // per pod
	benchWantCounters = benchPods * benchContainers
)

// realPods are the real sample's pods: UID, name and sandbox ID. memhog-oom alone has a CPU
// limit, hence the only series of the container_cpu_cfs_* families.
var realPods = [][3]string{
	{"49209e91-9438-4ff8-8fe7-8d4163da3a5d", "memhog-child-oom", "8394a63d29e0f184a71c5c04a3c9d1e18bd063830dd3923db6b8c88aad94b2e7"},
	{"b5ad9300-c0fd-4569-8811-9608fbabca91", "memhog-steady", "3989a919ab50e882a0973b3c6959fdbbc42e62e095803f7948d45e6f5f926946"},
	{"ec4c7412-f763-4718-ba86-dcd6a910f91f", "memhog-oom", "65610a254e040fcdad9e674f9e711e1e7fc1f98a9f833f5321afa1dedf991cb3"},
}

// realContainers are the IDs of the real sample's two running containers, both named hog.
var realContainers = []string{
	"a6554e071a84b538646842552b409f483c69290c295c374dd2b3e86ae76071d0",
	"f95668fb667ba94faeea26f81d2cd85fd4eba47e7835ef54bcadfff31cdd3651",
}

// node110 is the real sample grown to a node at its pod limit: every family, its label sets
// and value formats, with the node's own series once and, for each of 110 pods, the series of
// one of the real pods (its pod cgroup and sandbox) and three times those of one of the real
// containers, under new UIDs, names and IDs.
var node110 = sync.OnceValues(func() ([]byte, error) {
	real, err := os.ReadFile(realCadvisor)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	podLines := map[string][]string{} // by template pod UID or container ID, one family's
	flushPods := func() {
		for i := range benchPods {
			pod, ctr := realPods[i%len(realPods)], realContainers[i%len(realContainers)]
			uid := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
			var oldNew []string
			for _, p := range realPods {
				oldNew = append(oldNew, p[0], uid, `pod="`+p[1]+`"`, fmt.Sprintf(`pod="app-%03d"`, i), p[2], fmt.Sprintf("%064x", i<<8))
			}
			r := strings.NewReplacer(oldNew...)
			for _, l := range podLines[pod[0]] {
				out.WriteString(r.Replace(l))
			}
			for j := range benchContainers {
				r := strings.NewReplacer(append(oldNew, ctr, fmt.Sprintf("%064x", i<<8|(j+1)),
					`container="hog"`, fmt.Sprintf(`container="c%d"`, j))...)
				for _, l := range podLines[ctr] {
					out.WriteString(r.Replace(l))
				}
			}
		}
		clear(podLines)
	}
	for l := range strings.Lines(string(real)) {
		if strings.HasPrefix(l, "# HELP ") {
			flushPods()
		}
		key := "" // the container's series hold the pod's UID too: containers first
		for _, k := range []string{realContainers[0], realContainers[1], realPods[0][0], realPods[1][0], realPods[2][0]} {
			if strings.Contains(l, k) {
				key = k
				break
			}
		}
		if key == "" {
			out.WriteString(l) // a comment or the node's own series
		} else {
			podLines[key] = append(podLines[key], l)
		}
	}
	flushPods()
	return out.Bytes(), nil
})

func benchInput(b *testing.B) []byte {
	b.Helper()
	body, err := node110()
	require.NoError(b, err)
	return body
}

func TestNode110(t *testing.T) {
	t.Parallel()
	body, err := node110()
	require.NoError(t, err)
	got, err := ParseOOMEvents(bytes.NewReader(body))
	require.NoError(t, err)
	require.Len(t, got, benchWantCounters)
	for _, c := range got {
		require.True(t, validCounter(c), "%+v", c)
	}
	// The same families as the real sample, and all of it parses.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	parser = expfmt.NewTextParser(model.UTF8Validation)
	realFamilies, err := parser.TextToMetricFamilies(bytes.NewReader(readRealCadvisor(t)))
	require.NoError(t, err)
	assert.ElementsMatch(t, slices.Collect(maps.Keys(realFamilies)), slices.Collect(maps.Keys(families)))
	assert.Len(t, families[oomEventsFamily].GetMetric(), 4+benchPods*(2+benchContainers))
}

// BenchmarkOOMEvents110Pods is one scrape of a node at its pod limit from a kubelet over
// loopback HTTP, gzipped as the kubelet sends it to Go's transport, and uncompressed.
func BenchmarkOOMEvents110Pods(b *testing.B) {
	body := benchInput(b)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(body)
	_ = zw.Close()
	for _, gz := range []bool{true, false} {
		name := "identity"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", kubeletTextType)
				if gz && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
					w.Header().Set("Content-Encoding", "gzip")
					_, _ = w.Write(zipped.Bytes())
					return
				}
				_, _ = w.Write(body)
			}))
			b.Cleanup(srv.Close)
			c, err := NewClient(Settings{AuthType: AuthNone, Timeout: 10 * time.Second})
			require.NoError(b, err)
			b.Cleanup(c.Close)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				got, err := c.OOMEvents(context.Background(), srv.URL)
				if err != nil || len(got) != benchWantCounters {
					b.Fatalf("%d counters, %v", len(got), err)
				}
			}
			b.ReportMetric(float64(len(body)), "input-bytes")
			if gz {
				b.ReportMetric(float64(zipped.Len()), "gzip-bytes")
			}
		})
	}
}

// BenchmarkParseOOMEvents110Pods is the parse alone: the line filter, then expfmt on the family.
func BenchmarkParseOOMEvents110Pods(b *testing.B) {
	body := benchInput(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := ParseOOMEvents(bytes.NewReader(body))
		if err != nil || len(got) != benchWantCounters {
			b.Fatalf("%d counters, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(len(body)), "input-bytes")
}

// BenchmarkParseOOMEvents110PodsUnfiltered is the same parse with expfmt reading every family,
// the cost the line filter saves.
func BenchmarkParseOOMEvents110PodsUnfiltered(b *testing.B) {
	body := benchInput(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var got []OOMCounter
		for _, m := range families[oomEventsFamily].GetMetric() {
			if c, ok := oomCounter(m); ok {
				got = append(got, c)
			}
		}
		if len(got) != benchWantCounters {
			b.Fatalf("%d counters", len(got))
		}
	}
	b.ReportMetric(float64(len(body)), "input-bytes")
}
