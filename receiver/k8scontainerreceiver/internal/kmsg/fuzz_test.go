// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// seedFiles are the testdata/*.kmsg files.
func seedFiles(f *testing.F) [][]byte {
	f.Helper()
	paths, err := filepath.Glob("testdata/*.kmsg")
	require.NoError(f, err)
	var files [][]byte
	for _, path := range paths {
		data, err := os.ReadFile(path)
		require.NoError(f, err)
		files = append(files, data)
	}
	return files
}

// FuzzParseRecord checks that ParseRecord does not panic and that a record it parses prints
// back, the way the kernel escapes it, to bytes that parse to the same record.
func FuzzParseRecord(f *testing.F) {
	for _, data := range seedFiles(f) {
		for len(data) > 0 {
			end := recordEnd(data, true)
			f.Add(data[:end])
			data = data[end:]
		}
	}
	f.Add([]byte(`4,7,8,-,caller=T1;a\x5cb\x0ac\xZZ` + "\n" + ` KEY=v\x3dw` + "\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := ParseRecord(raw)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, rec.Level, 0)
		require.LessOrEqual(t, rec.Level, 7)
		require.GreaterOrEqual(t, rec.Facility, 0)
		require.GreaterOrEqual(t, rec.SinceBoot, time.Duration(0))
		if !bytes.Contains(raw, []byte{'\\'}) {
			require.Contains(t, string(raw), rec.Message)
		}
		again, err := ParseRecord(format(rec))
		require.NoError(t, err)
		require.Equal(t, rec, again)
	})
}

// format prints rec as /dev/kmsg would, escaping also "=" in keys so that they parse back.
func format(rec Record) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d,%d,%d,-;", rec.Facility<<3|rec.Level, rec.Seq, rec.SinceBoot.Microseconds())
	escape(&b, rec.Message, "")
	b.WriteByte('\n')
	for k, v := range rec.Dict {
		b.WriteByte(' ')
		escape(&b, k, "=")
		b.WriteByte('=')
		escape(&b, v, "")
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func escape(b *bytes.Buffer, s, also string) {
	for i := range len(s) {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '\\' || strings.IndexByte(also, c) >= 0 {
			const hex = "0123456789abcdef"
			b.Write([]byte{'\\', 'x', hex[c>>4], hex[c&15]})
			continue
		}
		b.WriteByte(c)
	}
}

// FuzzAssembler feeds lines to an Assembler, each as the record it is if it parses, else as
// the kernel's message of a record of its own, and checks the Assembler's invariants after
// each one.
func FuzzAssembler(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	f.Add([]byte(memcgSumm + "\n" + strings.Replace(memcgSumm, "pid=31533", "pid=40", 1) + "\n" + memcgKill + "\noom_kill_process: 8 callbacks suppressed\n"))
	f.Add([]byte("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/,task=a,b,pid=7,uid=0\nKilled process 7 (a,b) total-vm:4kB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Split(data, []byte{'\n'})
		if len(lines) > maxFuzzLines {
			t.Skip("hasSummaryOf takes time quadratic in the lines")
		}
		var a Assembler
		var records []Record // the records fed
		var reports, withoutSummary uint64
		for i, line := range lines {
			rec, err := ParseRecord(line)
			if err != nil {
				rec = Record{Seq: uint64(i), Message: string(line)}
			}
			r, ok := a.Add(rec)
			records = append(records, rec)
			if len(a.pending) > maxPendingSummaries {
				t.Fatalf("%d summaries pending", len(a.pending))
			}
			for _, s := range a.pending {
				if !s.hasPID {
					t.Fatalf("pending summary without PID: %+v", s)
				}
			}
			if !ok {
				continue
			}
			reports++
			if err := checkReport(rec, r); err != nil {
				t.Fatalf("record %+v: report %+v: %v", rec, r, err)
			}
			if !r.HasSummary {
				withoutSummary++
				continue
			}
			if !hasSummaryOf(records[:len(records)-1], rec.Seq, r.PID) {
				t.Fatalf("no summary of PID %d within %d records before record %d", r.PID, summaryWindow, rec.Seq)
			}
		}
		stats := a.Stats()
		require.Equal(t, uint64(len(records)), stats.Records)
		require.Equal(t, reports, stats.Reports)
		require.Equal(t, withoutSummary, stats.ReportsWithoutSummary)
	})
}

// maxFuzzLines bounds the lines of an input of FuzzAssembler.
const maxFuzzLines = 4096

// checkReport checks the Report r that the Assembler made of rec.
func checkReport(rec Record, r Report) error {
	switch {
	case r.Seq != rec.Seq || r.SinceBoot != rec.SinceBoot:
		return errors.New("not the record's seq and time")
	case rec.Facility != kernelFacility:
		return errors.New("not from the kernel")
	case !strings.Contains(rec.Message, killedMarker):
		return errors.New("not of a Killed process line")
	case r.PID < 0:
		return errors.New("negative PID")
	case !r.HasSummary && r.Constraint+r.OOMMemcg+r.TaskMemcg != "":
		return errors.New("cgroups without summary")
	case !r.Fields.Has(FieldUID) && r.UID != 0,
		!r.Fields.Has(FieldOOMScoreAdj) && r.OOMScoreAdj != 0:
		return errors.New("a number that was not printed")
	}
	for _, b := range []struct {
		field Fields
		n     int64
	}{
		{FieldTotalVM, r.TotalVM}, {FieldAnonRSS, r.AnonRSS}, {FieldFileRSS, r.FileRSS},
		{FieldShmemRSS, r.ShmemRSS}, {FieldPageTables, r.PageTables},
	} {
		if b.n < 0 || b.n%1024 != 0 || (!r.Fields.Has(b.field) && b.n != 0) {
			return fmt.Errorf("bytes %d of field %b", b.n, b.field)
		}
	}
	return nil
}

// hasSummaryOf tells whether one of records is a kernel's summary of pid within
// summaryWindow records before seq.
func hasSummaryOf(records []Record, seq uint64, pid int) bool {
	for _, rec := range records {
		body, ok := strings.CutPrefix(rec.Message, "oom-kill:")
		if !ok || rec.Facility != 0 || rec.Seq > seq || seq-rec.Seq > summaryWindow {
			continue
		}
		for piece := range strings.SplitSeq(body, ",") {
			if n, ok := strings.CutPrefix(piece, "pid="); ok {
				if p, err := strconv.Atoi(n); err == nil && p == pid {
					return true
				}
			}
		}
	}
	return false
}
