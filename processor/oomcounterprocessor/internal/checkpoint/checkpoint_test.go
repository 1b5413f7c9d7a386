// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package checkpoint

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/identity"
)

func sample() []Entry {
	return []Entry{
		{Key: identity.Key{Hi: 1, Lo: 2}, Series: counting.Series{Count: 3, Occurrence: 4, Last: 5, Start: 6, High: true}},
		{Key: identity.Key{Hi: 7, Lo: 8}, Series: counting.Series{Count: 0, Occurrence: -1, Last: 9, Start: 9}},
	}
}

func encode(fp uint64, entries []Entry) []byte {
	var e Encoder
	e.Begin(fp, len(entries))
	for _, x := range entries {
		e.Add(x.Key, x.Series)
	}
	return append([]byte(nil), e.Finish()...)
}

func decodeAll(blob []byte, fp uint64) ([]Entry, error) {
	var got []Entry
	err := Decode(blob, fp, func(e Entry) { got = append(got, e) })
	return got, err
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	got, err := decodeAll(encode(42, sample()), 42)
	require.NoError(t, err)
	assert.Equal(t, sample(), got)

	got, err = decodeAll(encode(42, nil), 42)
	require.NoError(t, err)
	assert.Empty(t, got)
}

func TestDamagedStateIsRefusedWhole(t *testing.T) {
	t.Parallel()
	good := encode(42, sample())
	flipped := append([]byte(nil), good...)
	flipped[30] ^= 0x10
	cases := map[string]struct {
		blob []byte
		fp   uint64
	}{
		"empty":             {blob: nil, fp: 42},
		"truncated":         {blob: good[:len(good)-10], fp: 42},
		"bit flip":          {blob: flipped, fp: 42},
		"other config":      {blob: good, fp: 43},
		"not a checkpoint":  {blob: []byte(`{"series":[]}` + "padding-padding-padding"), fp: 42},
		"extra bytes added": {blob: append(append([]byte(nil), good...), 0), fp: 42},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeAll(tc.blob, tc.fp)
			require.Error(t, err)
			assert.Empty(t, got, "nothing is applied from a refused blob")
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(1, sample()))
	f.Add([]byte("OOMC"))
	f.Fuzz(func(t *testing.T, blob []byte) {
		var n int
		err := Decode(blob, 1, func(Entry) { n++ })
		if err != nil && n != 0 {
			t.Fatalf("%d entries passed on before the error %v", n, err)
		}
		if err == nil {
			// What decodes must re-encode to the very same bytes.
			got, _ := decodeAll(blob, 1)
			assert.Equal(t, blob, encode(1, got))
		}
	})
}
