// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

// What the scraper's tests share: the golden files of whole scrapes, and the points and metrics
// of one container.

import (
	"flag"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/scrape")

// checkGolden compares md with testdata/scrape/<name>.yaml, or rewrites it under -update.
func checkGolden(t *testing.T, name string, md pmetric.Metrics) {
	t.Helper()
	path := filepath.Join("testdata", "scrape", name+".yaml")
	if *update {
		assert.NoError(t, golden.WriteMetrics(t, path, md, golden.SkipMetricTimestampNormalization()))
	}
	want, err := golden.ReadMetrics(path)
	require.NoError(t, err)
	require.NoError(t, pmetrictest.CompareMetrics(want, md,
		pmetrictest.IgnoreResourceMetricsOrder(),
		pmetrictest.IgnoreMetricsOrder(),
		pmetrictest.IgnoreStartTimestamp(),
	))
}

// oomPoints returns the k8s.container.oom_killed points per container name as
// "instance=value@time after podtest.T0".
func oomPoints(md pmetric.Metrics) map[string][]string {
	out := map[string][]string{}
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rm := rms.At(i)
		name, _ := rm.Resource().Attributes().Get("k8s.container.name")
		pod, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
		key := pod.Str() + "/" + name.Str()
		ms := rm.ScopeMetrics().At(0).Metrics()
		for j := range ms.Len() {
			if ms.At(j).Name() != "k8s.container.oom_killed" {
				continue
			}
			dps := ms.At(j).Gauge().DataPoints()
			for k := range dps.Len() {
				dp := dps.At(k)
				inst, _ := dp.Attributes().Get("k8s.container.restart_count")
				out[key] = append(out[key], fmt.Sprintf("%d=%d@%s", inst.Int(), dp.IntValue(), dp.Timestamp().AsTime().Sub(podtest.T0)))
			}
		}
	}
	return out
}

// metricNames lists the metrics of one container.
func metricNames(md pmetric.Metrics, podUID, container string) []string {
	var out []string
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		attrs := rms.At(i).Resource().Attributes()
		uid, _ := attrs.Get("k8s.pod.uid")
		name, _ := attrs.Get("k8s.container.name")
		if uid.Str() != podUID || name.Str() != container {
			continue
		}
		ms := rms.At(i).ScopeMetrics().At(0).Metrics()
		for j := range ms.Len() {
			out = append(out, ms.At(j).Name())
		}
	}
	return out
}

func reasonAttr(r metadata.AttributeReason) string { return r.String() }
