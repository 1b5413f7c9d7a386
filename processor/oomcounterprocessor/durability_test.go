// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadata"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadatatest"
)

// Durability: a count is in storage before a point carrying it leaves the processor. These tests
// kill a processor the way SIGKILL does (no Shutdown, nothing written after the kill) and build
// a new one on the same storage.

var errKilled = errors.New("the process was killed")

// killableClient passes operations to a storage client until the process "dies": from then on
// nothing reaches storage, as after a SIGKILL.
type killableClient struct {
	storage.Client
	killed atomic.Bool
}

func (c *killableClient) Get(ctx context.Context, key string) ([]byte, error) {
	if c.killed.Load() {
		return nil, errKilled
	}
	return c.Client.Get(ctx, key)
}

func (c *killableClient) Set(ctx context.Context, key string, value []byte) error {
	if c.killed.Load() {
		return errKilled
	}
	return c.Client.Set(ctx, key, value)
}

func (c *killableClient) Delete(ctx context.Context, key string) error {
	if c.killed.Load() {
		return errKilled
	}
	return c.Client.Delete(ctx, key)
}

func (c *killableClient) Batch(ctx context.Context, ops ...*storage.Operation) error {
	if c.killed.Load() {
		return errKilled
	}
	return c.Client.Batch(ctx, ops...)
}

// Close of a killed process never happens; the test closes the real client itself.
func (c *killableClient) Close(ctx context.Context) error {
	if c.killed.Load() {
		return nil
	}
	return c.Client.Close(ctx)
}

// clientExtension is a storage extension that hands out one given client.
type clientExtension struct {
	component.StartFunc
	component.ShutdownFunc
	client storage.Client
}

func (e *clientExtension) GetClient(context.Context, component.Kind, component.ID, string) (storage.Client, error) {
	return e.client, nil
}

// durableStorage opens the storage a processor instance uses, and closes the real client of a
// killed instance so that the next one can open the same storage.
type durableStorage struct {
	open  func(t *testing.T) storage.Client
	close func(t *testing.T, c storage.Client)
}

func inMemoryStorage() durableStorage {
	client := storagetest.NewInMemoryClient(component.KindProcessor, component.MustNewID("oom_counter"), "")
	return durableStorage{
		open:  func(*testing.T) storage.Client { return client },
		close: func(*testing.T, storage.Client) {},
	}
}

// fileStorage is the contrib file_storage extension on a directory of the test.
func fileStorage(t *testing.T) durableStorage {
	dir := t.TempDir()
	f := filestorage.NewFactory()
	cfg := f.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = dir
	return durableStorage{
		open: func(t *testing.T) storage.Client {
			ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), cfg)
			require.NoError(t, err)
			require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
			t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
			client, err := ext.(storage.Extension).GetClient(context.Background(), component.KindProcessor, component.MustNewID("oom_counter"), "")
			require.NoError(t, err)
			return client
		},
		close: func(t *testing.T, c storage.Client) { require.NoError(t, c.Close(context.Background())) },
	}
}

// instance is one run of the collector's processor on durable storage.
type instance struct {
	p      *counterProcessor
	real   storage.Client
	client *killableClient
}

func startInstance(t *testing.T, cfg *Config, st durableStorage) *instance {
	t.Helper()
	real := st.open(t)
	in := &instance{real: real, client: &killableClient{Client: real}}
	id := component.MustNewID("durable")
	cfg.Storage = &id
	host := &storageHost{ext: map[component.ID]component.Component{id: &clientExtension{client: in.client}}}
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	p, err := newCounterProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	require.NoError(t, p.start(context.Background(), host))
	in.p = p
	return in
}

// kill ends the instance as SIGKILL does: what it had not written is lost. Its goroutines are
// stopped only to keep the test tidy; they can write nothing any more.
func (in *instance) kill(t *testing.T, st durableStorage) {
	in.client.killed.Store(true)
	st.close(t, in.real)
	_ = in.p.shutdown(context.Background())
}

// outPoint is a counter point as a backend stores it.
type outPoint struct {
	start, ts, value uint64
}

// outputs reads the counter points of a processed batch, per pod uid.
func outputs(md pmetric.Metrics) map[string][]counterView {
	got := map[string][]counterView{}
	for uid, pts := range timedOutputs(md) {
		for _, p := range pts {
			got[uid] = append(got[uid], counterView{start: p.start, value: p.value})
		}
	}
	return got
}

func timedOutputs(md pmetric.Metrics) map[string][]outPoint {
	got := map[string][]outPoint{}
	for _, rm := range md.ResourceMetrics().All() {
		uid, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != "k8s.container.oom_kills" {
					continue
				}
				for _, dp := range m.Sum().DataPoints().All() {
					got[uid.Str()] = append(got[uid.Str()], outPoint{start: uint64(dp.StartTimestamp()), ts: uint64(dp.Timestamp()), value: uint64(dp.IntValue())})
				}
			}
		}
	}
	return got
}

func TestRestoreAfterKill(t *testing.T) {
	t.Parallel()
	for name, st := range map[string]func(*testing.T) durableStorage{
		"storagetest":  func(*testing.T) durableStorage { return inMemoryStorage() },
		"file_storage": fileStorage,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := st(t)
			cfg := createDefaultConfig().(*Config)
			cfg.CheckpointInterval = time.Hour // only the checkpoint the test asks for
			pods := []string{"a", "b"}

			first := startInstance(t, cfg, s)
			process := func(in *instance, md pmetric.Metrics) map[string][]counterView {
				out, err := in.p.processMetrics(context.Background(), md)
				require.NoError(t, err)
				return outputs(out)
			}
			process(first, flagBatch(10, pods, 0, 0))
			process(first, flagBatch(20, pods, 0, 1))
			require.NoError(t, first.p.save(context.Background()), "the periodic checkpoint")
			// Counted and exported after the checkpoint: under the old rule these were lost.
			process(first, flagBatch(30, pods, 1, 1))
			exported := process(first, flagBatch(40, []string{"a"}, 2, 1))
			require.Equal(t, []counterView{{start: 10, value: 3}}, exported["a"])
			first.kill(t, s)

			second := startInstance(t, cfg, s)
			defer func() { require.NoError(t, second.p.shutdown(context.Background())) }()
			// The receiver, restarted too, reports each container's latest termination again.
			again := process(second, flagBatch(50, []string{"a"}, 2, 1))
			assert.Equal(t, []counterView{{start: 10, value: 3}}, again["a"], "a: every count, same start")
			again = process(second, flagBatch(50, []string{"b"}, 1, 1))
			assert.Equal(t, []counterView{{start: 10, value: 2}}, again["b"], "b: every count, same start")
		})
	}
}

// TestJournalWriteFailureRefusesTheBatch: a count that cannot be saved does not leave; once
// storage works again the next batch saves everything before passing on.
func TestJournalWriteFailureRefusesTheBatch(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	defer func() { require.NoError(t, tt.Shutdown(context.Background())) }()
	cfg := createDefaultConfig().(*Config)
	cfg.CheckpointInterval = time.Hour
	mem, host := withMemoryStorage(cfg)
	p, err := newCounterProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	require.NoError(t, p.start(context.Background(), host))
	defer func() { require.NoError(t, p.shutdown(context.Background())) }()

	_, err = p.processMetrics(context.Background(), flagBatch(1, []string{"a"}, 0, 0))
	require.NoError(t, err)
	mem.failWith(errors.New("disk full"))
	_, err = p.processMetrics(context.Background(), flagBatch(2, []string{"a"}, 0, 1))
	require.ErrorContains(t, err, "disk full")
	// Nothing changes in this batch, but it would carry the unsaved count: refused too.
	_, err = p.processMetrics(context.Background(), flagBatch(3, []string{"a"}, 0, 1))
	require.ErrorContains(t, err, "disk full")
	assert.Equal(t, int64(2), readTelemetry(t, tt)["checkpoint_errors"])

	mem.failWith(nil)
	out, err := p.processMetrics(context.Background(), flagBatch(4, []string{"a"}, 0, 1))
	require.NoError(t, err)
	assert.Equal(t, []counterView{{start: 1, value: 1}}, outputs(out)["a"])
	restored := restoredTotals(t, cfg, mem, flagBatch(5, []string{"a"}, 0, 1))
	assert.Equal(t, int64(1), restored["a"], "the count that left is in storage")
}

// TestUnchangedBatchWritesNothing: a re-sent point changes no count or start: no storage write.
func TestUnchangedBatchWritesNothing(t *testing.T) {
	t.Parallel()
	cfg := createDefaultConfig().(*Config)
	cfg.CheckpointInterval = time.Hour
	mem, host := withMemoryStorage(cfg)
	p, err := newCounterProcessor(processortest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	require.NoError(t, p.start(context.Background(), host))
	defer func() { require.NoError(t, p.shutdown(context.Background())) }()
	_, err = p.processMetrics(context.Background(), flagBatch(1, []string{"a", "b"}, 0, 1))
	require.NoError(t, err)
	before := mem.writes()
	_, err = p.processMetrics(context.Background(), flagBatch(2, []string{"a", "b"}, 0, 1))
	require.NoError(t, err)
	assert.Equal(t, before, mem.writes(), "a batch that changed nothing wrote to storage")
	_, err = p.processMetrics(context.Background(), flagBatch(3, []string{"a", "b"}, 1, 1))
	require.NoError(t, err)
	assert.Equal(t, before+1, mem.writes(), "a batch that changed something writes once")
}

// TestKillAtRandomNeverDecreases kills the processor at random points between batches, some
// batches running concurrently, and checks what a backend would see: under one start time, a
// counter never decreases, across every instance.
func TestKillAtRandomNeverDecreases(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
			st := inMemoryStorage()
			cfg := createDefaultConfig().(*Config)
			cfg.CheckpointInterval = time.Duration(1+rng.IntN(5)) * time.Millisecond
			pods := []string{"a", "b", "c", "d"}
			occ := map[string]int64{}
			// Everything a backend received; batches ran concurrently, so it is checked in
			// timestamp order, as a backend reads it.
			received := map[string][]outPoint{}
			check := func(got map[string][]outPoint) {
				for uid, pts := range got {
					received[uid] = append(received[uid], pts...)
				}
			}
			in := startInstance(t, cfg, st)
			ts := uint64(0)
			for range 60 {
				if rng.IntN(8) == 0 {
					in.kill(t, st)
					in = startInstance(t, cfg, st)
				}
				// A few concurrent batches, each a scrape of some pods.
				n := 1 + rng.IntN(3)
				results := make(chan map[string][]outPoint, n)
				for range n {
					ts += 10
					var batch []string
					for _, uid := range pods {
						if rng.IntN(2) == 0 {
							occ[uid] += int64(rng.IntN(2))
							batch = append(batch, uid)
						}
					}
					md := pmetric.NewMetrics()
					for _, uid := range batch {
						flagBatch(ts, []string{uid}, occ[uid], int64(rng.IntN(2))).ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
					}
					go func(md pmetric.Metrics) {
						out, err := in.p.processMetrics(context.Background(), md)
						if err != nil {
							results <- nil
							return
						}
						results <- timedOutputs(out)
					}(md)
				}
				for range n {
					check(<-results)
				}
			}
			require.NoError(t, in.p.shutdown(context.Background()))
			for uid, pts := range received {
				slices.SortFunc(pts, func(a, b outPoint) int { return cmp.Compare(a.ts, b.ts) })
				highest := map[uint64]outPoint{}
				for _, p := range pts {
					if h, ok := highest[p.start]; ok {
						require.GreaterOrEqual(t, p.value, h.value, "%s decreased under start %d: %d at %d, then %d at %d", uid, p.start, h.value, h.ts, p.value, p.ts)
					}
					highest[p.start] = p
				}
			}
		})
	}
}

var _ extension.Extension = (*clientExtension)(nil)

// BenchmarkConsumeDurable: one batch in which one series changed, with file_storage on a temporary
// directory: the cost of the journal write that makes the change durable before it leaves.
func BenchmarkConsumeDurable(b *testing.B) {
	dir := b.TempDir()
	f := filestorage.NewFactory()
	fcfg := f.CreateDefaultConfig().(*filestorage.Config)
	fcfg.Directory = dir
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), fcfg)
	require.NoError(b, err)
	require.NoError(b, ext.Start(context.Background(), componenttest.NewNopHost()))
	b.Cleanup(func() { require.NoError(b, ext.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	id := component.MustNewID("file_storage")
	cfg.Storage = &id
	cfg.CheckpointInterval = time.Hour
	set := processortest.NewNopSettings(metadata.Type)
	client, err := ext.(storage.Extension).GetClient(context.Background(), component.KindProcessor, set.ID, "")
	require.NoError(b, err)
	writes := &batchCounter{Client: client}
	p, err := newCounterProcessor(set, cfg)
	require.NoError(b, err)
	require.NoError(b, p.start(context.Background(), &storageHost{ext: map[component.ID]component.Component{id: &clientExtension{client: writes}}}))
	b.Cleanup(func() { require.NoError(b, p.shutdown(context.Background())) })
	_, err = p.processMetrics(context.Background(), flagBatch(1, []string{"a"}, 0, 0))
	require.NoError(b, err)

	before := writes.batches.Load()
	b.ReportAllocs()
	occ := int64(0)
	for b.Loop() {
		b.StopTimer()
		occ++
		md := flagBatch(uint64(occ+1), []string{"a"}, occ, 1)
		b.StartTimer()
		out, err := p.processMetrics(context.Background(), md)
		if err != nil {
			b.Fatal(err)
		}
		if got := out.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints().At(0).IntValue(); got != occ {
			b.Fatalf("count %d, want %d", got, occ)
		}
	}
	b.StopTimer()
	if w := writes.batches.Load() - before; w != uint64(b.N) {
		b.Fatalf("%d storage writes for %d batches", w, b.N)
	}
}

// batchCounter counts the storage batches written through it: one per durable batch between
// snapshots.
type batchCounter struct {
	storage.Client
	batches atomic.Uint64
}

func (c *batchCounter) Batch(ctx context.Context, ops ...*storage.Operation) error {
	c.batches.Add(1)
	return c.Client.Batch(ctx, ops...)
}
