// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package persist

import (
	"context"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/checkpoint"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

const fp = 42

// live is the state a journal snapshots.
type live map[identity.Key]counting.Series

func (l live) all(f func(identity.Key, counting.Series)) {
	for k, s := range l {
		f(k, s)
	}
}

func segment(entries ...checkpoint.Entry) []byte {
	var e checkpoint.Encoder
	e.Begin(fp, len(entries))
	for _, x := range entries {
		e.Add(x.Key, x.Series)
	}
	return append([]byte(nil), e.Finish()...)
}

func entry(k uint64, count, last uint64) checkpoint.Entry {
	return checkpoint.Entry{Key: identity.Key{Hi: k, Lo: k}, Series: counting.Series{Count: count, Last: last, Start: 1}}
}

func restore(t *testing.T, j *Journal) (map[identity.Key]counting.Series, Restored) {
	t.Helper()
	got := map[identity.Key]counting.Series{}
	r := j.Restore(context.Background(), func(e checkpoint.Entry) {
		_, dup := got[e.Key]
		require.False(t, dup, "a series restored twice")
		got[e.Key] = e.Series
	})
	return got, r
}

func newClient() *storagetest.TestClient {
	return storagetest.NewInMemoryClient(component.KindProcessor, component.MustNewID("oom_counter"), "")
}

// TestLaterStateWinsWhateverTheSegmentOrder: concurrent batches may write their segments in
// another order than they applied: the later state of a series wins.
func TestLaterStateWinsWhateverTheSegmentOrder(t *testing.T) {
	t.Parallel()
	client := newClient()
	state := live{}
	j := New(client, fp, state.all)
	state[entry(1, 1, 10).Key] = entry(1, 1, 10).Series
	require.NoError(t, j.Snapshot(context.Background()))
	require.NoError(t, j.Append(context.Background(), segment(entry(1, 3, 30), entry(2, 1, 30))))
	require.NoError(t, j.Append(context.Background(), segment(entry(1, 2, 20))))

	got, r := restore(t, New(client, fp, nil))
	assert.Empty(t, r.Problems)
	assert.Equal(t, 1, r.Snapshot)
	assert.Equal(t, 2, r.Segments)
	assert.Equal(t, map[identity.Key]counting.Series{entry(1, 0, 0).Key: entry(1, 3, 30).Series, entry(2, 0, 0).Key: entry(2, 1, 30).Series}, got)
}

func TestSnapshotDropsTheJournal(t *testing.T) {
	t.Parallel()
	client := newClient()
	state := live{}
	j := New(client, fp, state.all)
	require.NoError(t, j.Append(context.Background(), segment(entry(1, 1, 10))))
	require.NoError(t, j.Append(context.Background(), segment(entry(1, 2, 20))))
	state[entry(1, 2, 20).Key] = entry(1, 2, 20).Series
	require.NoError(t, j.Snapshot(context.Background()))
	for n := uint64(1); n <= 2; n++ {
		blob, err := client.Get(context.Background(), SegmentKey(0, n))
		require.NoError(t, err)
		assert.Nil(t, blob, "segment %d outlived the snapshot", n)
	}
	got, r := restore(t, New(client, fp, nil))
	assert.Empty(t, r.Problems)
	assert.Equal(t, 0, r.Segments)
	assert.Equal(t, uint64(2), got[entry(1, 0, 0).Key].Count)
}

// TestDamagedSegmentDiscardsTheRest: a damaged segment is not fatal; it and every later one are
// discarded, the earlier ones kept.
func TestDamagedSegmentDiscardsTheRest(t *testing.T) {
	t.Parallel()
	client := newClient()
	j := New(client, fp, live{}.all)
	require.NoError(t, j.Append(context.Background(), segment(entry(1, 1, 10))))
	require.NoError(t, j.Append(context.Background(), segment(entry(1, 2, 20))))
	require.NoError(t, j.Append(context.Background(), segment(entry(2, 5, 30))))
	bad, err := client.Get(context.Background(), SegmentKey(0, 2))
	require.NoError(t, err)
	bad = append([]byte(nil), bad...)
	bad[len(bad)/2] ^= 0xff
	require.NoError(t, client.Set(context.Background(), SegmentKey(0, 2), bad))

	k := New(client, fp, live{}.all)
	got, r := restore(t, k)
	require.Len(t, r.Problems, 1)
	assert.ErrorContains(t, r.Problems[0], "journal segment 2 of 3")
	assert.Equal(t, map[identity.Key]counting.Series{entry(1, 0, 0).Key: entry(1, 1, 10).Series}, got)
	assert.True(t, k.Dirty(), "new segments must not follow a cut journal: the next write is a snapshot")
}

func TestDamagedHeadIsNotFatal(t *testing.T) {
	t.Parallel()
	client := newClient()
	state := live{entry(1, 4, 10).Key: entry(1, 4, 10).Series}
	j := New(client, fp, state.all)
	require.NoError(t, j.Snapshot(context.Background()))
	require.NoError(t, client.Set(context.Background(), HeadKey, []byte("garbage")))
	got, r := restore(t, New(client, fp, nil))
	require.Len(t, r.Problems, 1)
	assert.Equal(t, uint64(4), got[entry(1, 0, 0).Key].Count, "the snapshot still counts")
}

func TestForeignSegmentsAreRefused(t *testing.T) {
	t.Parallel()
	client := newClient()
	require.NoError(t, New(client, fp, live{}.all).Append(context.Background(), segment(entry(1, 1, 10))))
	got, r := restore(t, New(client, fp+1, nil))
	assert.Empty(t, got)
	require.Len(t, r.Problems, 1)
	assert.ErrorIs(t, r.Problems[0], checkpoint.ErrFingerprint)
}

func TestHeadRoundTrip(t *testing.T) {
	t.Parallel()
	h, err := decodeHead(encodeHead(head{generation: 7, length: 9}))
	require.NoError(t, err)
	assert.Equal(t, head{generation: 7, length: 9}, h)
	b := encodeHead(head{generation: 7, length: 9})
	b[10] ^= 1
	_, err = decodeHead(b)
	assert.Error(t, err)
}
