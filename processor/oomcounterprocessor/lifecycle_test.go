// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadatatest"
)

// The component contract: Start and Shutdown may be called in any order and more than once
// without harm, and Shutdown cleans up even when its context has expired.

func TestShutdownTwice(t *testing.T) {
	t.Parallel()
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), createDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, p.Shutdown(context.Background()))
	require.NotPanics(t, func() { require.NoError(t, p.Shutdown(context.Background())) })
}

func TestShutdownTwiceWithoutStart(t *testing.T) {
	t.Parallel()
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), createDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, p.Shutdown(context.Background()))
	require.NoError(t, p.Shutdown(context.Background()))
}

// TestStartTwiceStartsOnce runs alone (not in parallel): it counts this package's background
// loops among all goroutines of the test binary, and parallel tests start loops of their own.
func TestStartTwiceStartsOnce(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	mem, host := withMemoryStorage(cfg)
	p, err := newCounterProcessor(processortest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)

	before := backgroundLoops()
	require.NoError(t, p.start(context.Background(), host))
	afterFirst := backgroundLoops()
	require.NoError(t, p.start(context.Background(), host), "a second Start is a no-op")
	assert.Equal(t, afterFirst, backgroundLoops(), "the second Start started background loops")
	assert.Equal(t, before+2, afterFirst, "the first Start starts the expiry and checkpoint loops")
	assert.Equal(t, 1, mem.clients(), "the second Start opened another storage client")
	require.NoError(t, p.shutdown(context.Background()))
	assert.Equal(t, 1, mem.closedClients())
	assert.Equal(t, before, backgroundLoops(), "Shutdown left a background loop running")
}

// backgroundLoops counts the goroutines started through a sync.WaitGroup, as the processor starts
// its loops; a goroutine not yet scheduled shows no more of its stack than that.
func backgroundLoops() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "created by sync.(*WaitGroup).Go")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestShutdownAfterDeadlineStillSaves: the final save is attempted and the storage client is
// closed even when the context given to Shutdown has already expired.
func TestShutdownAfterDeadlineStillSaves(t *testing.T) {
	t.Parallel()
	cfg := createDefaultConfig().(*Config)
	cfg.CheckpointInterval = time.Hour
	mem, host := withMemoryStorage(cfg)
	p, err := newCounterProcessor(processortest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, p.start(context.Background(), host))
	_, err = p.processMetrics(context.Background(), flagBatch(1, []string{"a"}, 0, 0))
	require.NoError(t, err)
	_, err = p.processMetrics(context.Background(), flagBatch(2, []string{"a"}, 1, 1))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.shutdown(ctx)
	assert.Equal(t, 1, mem.closedClients(), "the storage client was not closed")

	restored := restoredTotals(t, cfg, mem, flagBatch(3, []string{"a"}, 1, 1))
	assert.Equal(t, int64(1), restored["a"], "the final save did not reach storage")
}

// TestShutdownSaveFailureIsCounted: a final save that fails is logged and counted, and the
// client is still closed.
func TestShutdownSaveFailureIsCounted(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	defer func() { require.NoError(t, tt.Shutdown(context.Background())) }()
	cfg := createDefaultConfig().(*Config)
	cfg.CheckpointInterval = time.Hour
	mem, host := withMemoryStorage(cfg)
	p, err := newCounterProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	require.NoError(t, p.start(context.Background(), host))
	mem.failWith(errors.New("disk full"))
	require.ErrorContains(t, p.shutdown(context.Background()), "disk full")
	assert.Equal(t, 1, mem.closedClients(), "the storage client was not closed")
	assert.Equal(t, int64(1), readTelemetry(t, tt)["checkpoint_errors"])
}

// restoredTotals starts a fresh processor on the storage, feeds it md and returns the totals it
// emits.
func restoredTotals(t *testing.T, cfg *Config, mem *memoryStorage, md pmetric.Metrics) map[string]int64 {
	t.Helper()
	sink := new(consumertest.MetricsSink)
	q, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, q.Start(context.Background(), &storageHost{ext: map[component.ID]component.Component{*cfg.Storage: mem.snapshot()}}))
	defer func() { require.NoError(t, q.Shutdown(context.Background())) }()
	require.NoError(t, q.ConsumeMetrics(context.Background(), md))
	return lastTotals(sink)
}
