// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadatatest"
)

// flagBatch is one scrape of containers: for each, a flag at the given restart index.
func flagBatch(ts uint64, uids []string, occ int64, flag int64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	for _, uid := range uids {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("k8s.pod.uid", uid)
		rm.Resource().Attributes().PutStr("k8s.container.name", "app")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("k8s.container.oom_killed")
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(ts))
		dp.SetIntValue(flag)
		dp.Attributes().PutInt("k8s.container.restart_count", occ)
	}
	return md
}

// lastTotals reads the latest counter value per pod from everything the sink received.
func lastTotals(sink *consumertest.MetricsSink) map[string]int64 {
	totals := map[string]int64{}
	latest := map[string]pcommon.Timestamp{}
	for _, md := range sink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			uid, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != "k8s.container.oom_kills" {
						continue
					}
					for _, dp := range m.Sum().DataPoints().All() {
						if dp.Timestamp() >= latest[uid.Str()] {
							latest[uid.Str()] = dp.Timestamp()
							totals[uid.Str()] = dp.IntValue()
						}
					}
				}
			}
		}
	}
	return totals
}

// TestConcurrentConsumers runs many ConsumeMetrics calls at once, several on the same series:
// every OOM counts exactly once (run with -race).
func TestConcurrentConsumers(t *testing.T) {
	t.Parallel()
	sink := new(consumertest.MetricsSink)
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), createDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, p.Shutdown(context.Background())) }()

	uids := make([]string, 50)
	for i := range uids {
		uids[i] = fmt.Sprintf("pod-%d", i)
	}
	require.NoError(t, p.ConsumeMetrics(context.Background(), flagBatch(1, uids, 0, 0)))

	// Five OOM kills per container, each reported by four racing senders.
	const ooms, senders = 5, 4
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for occ := range int64(ooms) {
				assert.NoError(t, p.ConsumeMetrics(context.Background(), flagBatch(uint64(10+occ), uids, occ, 1)))
			}
		})
	}
	wg.Wait()
	require.NoError(t, p.ConsumeMetrics(context.Background(), flagBatch(100, uids, ooms, 0)))

	totals := lastTotals(sink)
	require.Len(t, totals, len(uids))
	for _, uid := range uids {
		assert.Equal(t, int64(ooms), totals[uid], uid)
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	t.Parallel()
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), createDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, p.Shutdown(context.Background()))
}

func TestStartFailsWithoutTheStorageExtension(t *testing.T) {
	t.Parallel()
	cfg := createDefaultConfig().(*Config)
	id := component.MustNewID("file_storage")
	cfg.Storage = &id
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	require.NoError(t, err)
	err = p.Start(context.Background(), componenttest.NewNopHost())
	require.ErrorContains(t, err, `storage: extension "file_storage" not found`)
	require.NoError(t, p.Shutdown(context.Background()))
}

// TestCheckpointsPeriodically shows that the periodic checkpoint writes a snapshot that holds
// the counts, and drops the journal it replaces: restored from storage as a SIGKILL leaves it
// after the checkpoint, every series has its count, start and occurrence.
func TestCheckpointsPeriodically(t *testing.T) {
	t.Parallel()
	cfg := createDefaultConfig().(*Config)
	cfg.CheckpointInterval = 20 * time.Millisecond
	mem, host := withMemoryStorage(cfg)
	p, err := newCounterProcessor(processortest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, p.start(context.Background(), host))
	defer func() { require.NoError(t, p.shutdown(context.Background())) }()
	for _, md := range []pmetric.Metrics{
		flagBatch(1, []string{"a", "b"}, 0, 0),
		flagBatch(2, []string{"a"}, 0, 1),
		flagBatch(3, []string{"a"}, 1, 1),
		flagBatch(4, []string{"b"}, 2, 1),
	} {
		_, err = p.processMetrics(context.Background(), md)
		require.NoError(t, err)
	}

	// Once a checkpoint ran, storage holds a snapshot and no journal segment.
	require.Eventually(t, func() bool {
		mem.mu.Lock()
		defer mem.mu.Unlock()
		for k := range mem.data {
			if strings.Contains(k, "journal/") && !strings.HasSuffix(k, "journal/head") {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond)

	q, err := newCounterProcessor(processortest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, q.start(context.Background(), &storageHost{ext: map[component.ID]component.Component{*cfg.Storage: mem.snapshot()}}))
	defer func() { require.NoError(t, q.shutdown(context.Background())) }()
	type saved struct {
		count, start uint64
		occurrence   int64
	}
	var got []saved
	q.store.Range(func(_ identity.Key, s counting.Series) {
		got = append(got, saved{count: s.Count, start: s.Start, occurrence: s.Occurrence})
	})
	assert.ElementsMatch(t, []saved{{count: 2, start: 1, occurrence: 1}, {count: 1, start: 1, occurrence: 2}}, got)
}

// TestStaleSeriesExpireInTime runs the real sweeper: a series unseen for max_stale is forgotten
// no later than 2*max_stale + 1s, and not before max_stale.
func TestStaleSeriesExpireInTime(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	defer func() { require.NoError(t, tt.Shutdown(context.Background())) }()
	cfg := createDefaultConfig().(*Config)
	cfg.MaxStale = time.Second
	p, err := NewFactory().CreateMetrics(context.Background(), metadatatest.NewSettings(tt), cfg, consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, p.Shutdown(context.Background())) }()

	seen := time.Now()
	require.NoError(t, p.ConsumeMetrics(context.Background(), flagBatch(1, []string{"a"}, 0, 0)))
	expired := func() bool {
		m, err := tt.GetMetric("otelcol_oom_counter_series_expired")
		return err == nil && m.Data.(metricdata.Sum[int64]).DataPoints[0].Value == 1
	}
	require.Eventually(t, expired, 2*cfg.MaxStale+time.Second+time.Second, 20*time.Millisecond,
		"not forgotten within 2*max_stale + 1s (and a second of scheduling slack)")
	assert.GreaterOrEqual(t, time.Since(seen), cfg.MaxStale, "forgotten before max_stale")
}

// TestStateKeyedByOtherAttributesIsNotRestored: series keys depend on identifying_attributes, so
// state saved under another list would be looked up under the wrong keys; it is discarded.
func TestStateKeyedByOtherAttributesIsNotRestored(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	defer func() { require.NoError(t, tt.Shutdown(context.Background())) }()
	cfg := createDefaultConfig().(*Config)
	_, host := withMemoryStorage(cfg)
	p, err := newCounterProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	require.NoError(t, p.start(context.Background(), host))
	_, err = p.processMetrics(context.Background(), flagBatch(1, []string{"a"}, 0, 0))
	require.NoError(t, err)
	require.NoError(t, p.shutdown(context.Background()))

	other := *cfg
	other.IdentifyingAttributes = []string{}
	q, err := newCounterProcessor(metadatatest.NewSettings(tt), &other)
	require.NoError(t, err)
	require.NoError(t, q.start(context.Background(), host))
	assert.Zero(t, q.store.Len(), "state keyed by other attributes was restored")
	assert.Equal(t, int64(1), readTelemetry(t, tt)["checkpoint_errors"])
	require.NoError(t, q.shutdown(context.Background()))
}

// TestEmptyIdentifyingAttributesSplitOnEveryAttribute: with identifying_attributes: [] every
// resource attribute identifies, so a new container.id is a new series starting at its baseline.
func TestEmptyIdentifyingAttributesSplitOnEveryAttribute(t *testing.T) {
	t.Parallel()
	cfg := createDefaultConfig().(*Config)
	cfg.IdentifyingAttributes = []string{}
	p, err := newCounterProcessor(processortest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	withID := func(ts uint64, containerID string, occ, flag int64) pmetric.Metrics {
		md := flagBatch(ts, []string{"a"}, occ, flag)
		md.ResourceMetrics().At(0).Resource().Attributes().PutStr("container.id", containerID)
		return md
	}
	_, err = p.processMetrics(context.Background(), withID(1, "c0", 0, 0))
	require.NoError(t, err)
	out, err := p.processMetrics(context.Background(), withID(2, "c1", 0, 1))
	require.NoError(t, err)
	dp := out.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints().At(0)
	assert.Equal(t, int64(0), dp.IntValue(), "a new container.id is a new series, whose first point is its baseline")
	assert.Equal(t, 2, p.store.Len())
}
