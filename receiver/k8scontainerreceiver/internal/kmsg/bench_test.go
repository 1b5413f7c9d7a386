// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// benchRecords are the records of testdata/suppressed.kmsg: 255 records, 11 of them the
// "Killed process" lines of as many Reports, 3 with a summary.
func benchRecords(b *testing.B) (raws [][]byte, records []Record, killed []bool) {
	b.Helper()
	data, err := os.ReadFile("testdata/suppressed.kmsg")
	require.NoError(b, err)
	for len(data) > 0 {
		end := recordEnd(data, true)
		raws = append(raws, data[:end])
		data = data[end:]
	}
	records = readRecords(b, "testdata/suppressed.kmsg")
	for _, rec := range records {
		killed = append(killed, strings.Contains(rec.Message, killedMarker))
	}
	return raws, records, killed
}

// reportsIn is how many Reports n records of records, over and over, make.
func reportsIn(killed []bool, n int) int {
	count := 0
	for i := range n {
		if killed[i%len(killed)] {
			count++
		}
	}
	return count
}

// BenchmarkAssembler is the cost of Assembler.Add per record.
func BenchmarkAssembler(b *testing.B) {
	_, records, killed := benchRecords(b)
	var a Assembler
	b.ReportAllocs()
	reports, i := 0, 0
	for ; b.Loop(); i++ {
		rec := records[i%len(records)]
		rec.Seq = uint64(i)
		if _, ok := a.Add(rec); ok {
			reports++
		}
	}
	require.Equal(b, reportsIn(killed, i), reports)
	require.Zero(b, a.Stats().LostRecords)
}

// BenchmarkParseRecord is the cost of ParseRecord per record.
func BenchmarkParseRecord(b *testing.B) {
	raws, _, _ := benchRecords(b)
	b.ReportAllocs()
	i := 0
	for ; b.Loop(); i++ {
		if _, err := ParseRecord(raws[i%len(raws)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndAssembleParallel is the cost per record of ParseRecord and Add, with an
// Assembler per goroutine; run with -cpu 1,2.
func BenchmarkParseAndAssembleParallel(b *testing.B) {
	raws, _, killed := benchRecords(b)
	var records, reports atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var a Assembler
		n, made := 0, 0
		for ; pb.Next(); n++ {
			rec, err := ParseRecord(raws[n%len(raws)])
			if err != nil {
				panic(err)
			}
			rec.Seq = uint64(n)
			if _, ok := a.Add(rec); ok {
				made++
			}
		}
		if made != reportsIn(killed, n) {
			panic("wrong number of reports")
		}
		records.Add(int64(n))
		reports.Add(int64(made))
	})
	require.Equal(b, int64(b.N), records.Load())
}
