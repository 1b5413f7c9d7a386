// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestReaderFile reads records from a regular file, across more than one read, and then the
// records appended to it.
func TestReaderFile(t *testing.T) {
	t.Parallel()
	suppressed, err := os.ReadFile("testdata/suppressed.kmsg")
	require.NoError(t, err)
	continuation, err := os.ReadFile("testdata/continuation.kmsg")
	require.NoError(t, err)
	require.Greater(t, len(suppressed), readSize, "the file must take more than one read")
	path := filepath.Join(t.TempDir(), "kmsg")
	require.NoError(t, os.WriteFile(path, suppressed, 0o600))

	r, err := Open(path, true)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	got, err := r.ReadAvailable()
	require.NoError(t, err)
	want := assemble(readRecords(t, "testdata/suppressed.kmsg"))
	require.Equal(t, want.Reports, got)
	require.Equal(t, want.Stats, r.Stats())

	got, err = r.ReadAvailable()
	require.NoError(t, err)
	require.Empty(t, got)

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(continuation)
	require.NoError(t, err)
	got, err = r.ReadAvailable()
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, 1496, got[0].PID)
	stats := r.Stats()
	require.Equal(t, want.Stats.Records+10, stats.Records)
	require.Zero(t, stats.LostRecords, "continuation.kmsg goes back in seq, which is no loss")
}

// TestReaderFromEnd skips what the file holds when it is opened.
func TestReaderFromEnd(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "kmsg")
	require.NoError(t, os.WriteFile(path, []byte(rec(1, memcgSumm)+rec(2, memcgKill)), 0o600))
	r, err := Open(path, false)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	got, err := r.ReadAvailable()
	require.NoError(t, err)
	require.Empty(t, got)
	require.Zero(t, r.Stats().Records)
}

// TestReaderFIFO reads from a FIFO without blocking: nothing while there is nothing, a record
// once all of it is there.
func TestReaderFIFO(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	r, err := Open(path, false)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })

	got, err := r.ReadAvailable()
	require.NoError(t, err, "no writer yet")
	require.Empty(t, got)

	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer w.Close()
	got, err = r.ReadAvailable()
	require.NoError(t, err, "a writer that wrote nothing: EAGAIN")
	require.Empty(t, got)

	kill := rec(2, memcgKill)
	_, err = w.WriteString(rec(1, memcgSumm) + kill[:40])
	require.NoError(t, err)
	got, err = r.ReadAvailable()
	require.NoError(t, err)
	require.Empty(t, got, "the Killed process line is not all there")

	_, err = w.WriteString(kill[40:] + rec(3, "virtio_blk virtio1: [vda] new size") + " SUBSYSTEM=virtio\n")
	require.NoError(t, err)
	got, err = r.ReadAvailable()
	require.NoError(t, err)
	require.Equal(t, []Report{memcgReport(2)}, got)
	require.Equal(t, Stats{Records: 3, Reports: 1}, r.Stats())

	_, err = w.WriteString(strings.Repeat("x", maxRecordSize+1))
	require.NoError(t, err)
	_, err = r.ReadAvailable()
	require.NoError(t, err)
	require.Equal(t, uint64(1), r.Stats().Malformed, "a line longer than a record is dropped")
	_, err = w.WriteString("\n" + rec(4, "a") + "not a record\n")
	require.NoError(t, err)
	_, err = r.ReadAvailable()
	require.NoError(t, err)
	require.Equal(t, Stats{Records: 4, Reports: 1, Malformed: 3}, r.Stats())
}

// TestReaderDevKmsg reads this host's /dev/kmsg from its oldest record, without blocking.
func TestReaderDevKmsg(t *testing.T) {
	t.Parallel()
	r, err := Open("/dev/kmsg", true)
	if err != nil {
		t.Skipf("cannot read /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	reports, err := r.ReadAvailable()
	require.NoError(t, err)
	stats := r.Stats()
	require.Positive(t, stats.Records)
	require.Zero(t, stats.Malformed)
	require.Equal(t, uint64(len(reports)), stats.Reports)
	for _, report := range reports {
		require.Positive(t, report.PID)
		require.NotEmpty(t, report.Process)
		if report.HasSummary {
			require.NotEmpty(t, report.Constraint)
		}
	}
	t.Logf("%d reports in %d records: %+v", len(reports), stats.Records, stats)

	_, err = r.ReadAvailable()
	require.NoError(t, err)

	end, err := Open("/dev/kmsg", false)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, end.Close()) })
	_, err = end.ReadAvailable()
	require.NoError(t, err)
	require.Less(t, end.Stats().Records, stats.Records, "opened at the end")
}

func TestReaderErrors(t *testing.T) {
	t.Parallel()
	_, err := Open(filepath.Join(t.TempDir(), "missing"), true)
	require.ErrorIs(t, err, os.ErrNotExist)

	r, err := Open(t.TempDir(), true)
	require.NoError(t, err)
	_, err = r.ReadAvailable()
	var pathErr *os.PathError
	require.ErrorAs(t, err, &pathErr)
	require.ErrorIs(t, err, syscall.EISDIR)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close())
	_, err = r.ReadAvailable()
	require.ErrorIs(t, err, os.ErrClosed)
}

func TestBootTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 12, 5, 10, 0, 0, 0, time.UTC)
	require.Equal(t, time.Date(2025, 12, 5, 0, 0, 0, 0, time.UTC), bootTime(now, 10*time.Hour))

	boot, err := BootTime()
	require.NoError(t, err)
	uptime, err := os.ReadFile("/proc/uptime")
	require.NoError(t, err)
	seconds, _, _ := strings.Cut(string(uptime), " ")
	sinceBoot, err := time.ParseDuration(seconds + "s")
	require.NoError(t, err)
	// /proc/uptime also counts time suspended, which BootTime leaves out.
	require.False(t, boot.Before(time.Now().Add(-sinceBoot-time.Second)), "boot %v, uptime %v", boot, sinceBoot)
	require.True(t, boot.Before(time.Now()))
}
