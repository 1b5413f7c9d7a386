// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"bytes"
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxRecordSize bounds a record: /dev/kmsg formats none longer than 8 KiB
	// (CONSOLE_EXT_LOG_MAX), and fails a read into a buffer too small for the next one.
	maxRecordSize = 8192
	// readSize is the size of a read: more than a record, so that /dev/kmsg never fills it
	// and a read that does fill it is of a file with more to come.
	readSize = 2 * maxRecordSize
	// maxReadsPerCall bounds the reads of one ReadAvailable, so that it returns even while
	// the kernel logs as fast as it is read; the next call reads on.
	maxReadsPerCall = 1 << 14
)

// Reader reads the OOM reports that the kernel logs to /dev/kmsg; for use by one goroutine.
//
// It reads any file of records, each ending with a newline: /dev/kmsg gives one per read, while
// a regular file or a FIFO gives what was written. A record is taken as whole when a read that
// does not fill the buffer ends with it, or when the file has nothing more for now: a writer
// of such a file must write each record's continuation lines together with it.
type Reader struct {
	path string
	fd   int
	buf  []byte
	// unread holds the bytes read but not yet parsed: a record that may not be whole yet.
	unread    []byte
	assembler Assembler
	overruns  uint64
	malformed uint64
}

// Open opens path (normally /dev/kmsg) for reading without blocking, at the oldest record the
// kernel still holds when fromStart is true, else after the newest. Reading /dev/kmsg takes
// CAP_SYSLOG unless the sysctl kernel.dmesg_restrict is 0.
func Open(path string, fromStart bool) (*Reader, error) {
	// os.File would wait in the runtime's poller on EAGAIN; a raw descriptor returns it.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	whence := io.SeekEnd
	if fromStart {
		whence = io.SeekStart
	}
	// A FIFO has no position (ESPIPE) and reads from where its writer is.
	if _, err := unix.Seek(fd, 0, whence); err != nil && !errors.Is(err, unix.ESPIPE) {
		_ = unix.Close(fd)
		return nil, &os.PathError{Op: "seek", Path: path, Err: err}
	}
	return &Reader{path: path, fd: fd, buf: make([]byte, readSize)}, nil
}

// ReadAvailable returns the Reports of the records logged since the last call, without
// waiting for more. It reads until there is nothing more to read or for maxReadsPerCall
// reads. When the kernel has overwritten records before they were read, it goes on with the
// oldest record left and counts the loss in Stats. The Reports come before any error.
func (r *Reader) ReadAvailable() ([]Report, error) {
	if r.fd < 0 {
		return nil, &os.PathError{Op: "read", Path: r.path, Err: os.ErrClosed}
	}
	var reports []Report
	for range maxReadsPerCall {
		n, err := unix.Read(r.fd, r.buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EPIPE):
			r.overruns++
			continue
		case errors.Is(err, unix.EAGAIN), err == nil && n == 0: // n == 0: the end of a file
			return r.parse(nil, true, reports), nil
		case err != nil:
			return reports, &os.PathError{Op: "read", Path: r.path, Err: err}
		}
		reports = r.parse(r.buf[:n], n < len(r.buf), reports)
	}
	return reports, nil
}

// parse appends to reports those of the records in unread and chunk, and keeps in unread
// what may not be a whole record yet: a line without its newline, and the last record unless
// whole is true.
func (r *Reader) parse(chunk []byte, whole bool, reports []Report) []Report {
	r.unread = append(r.unread, chunk...)
	data := r.unread
	for {
		end := recordEnd(data, whole)
		if end < 0 {
			break
		}
		rec, err := ParseRecord(data[:end])
		data = data[end:]
		if err != nil {
			r.malformed++
			continue
		}
		if report, ok := r.assembler.Add(rec); ok {
			reports = append(reports, report)
		}
	}
	if len(data) > maxRecordSize {
		r.malformed++
		data = data[:0]
	}
	r.unread = append(r.unread[:0], data...)
	return reports
}

// recordEnd is the length of the record at the start of data, continuation lines included,
// or -1 when it may not be all there: when a line is not, or when the record ends data and
// whole is false.
func recordEnd(data []byte, whole bool) int {
	end := bytes.IndexByte(data, '\n') + 1
	if end == 0 {
		return -1
	}
	for end < len(data) && data[end] == ' ' {
		next := bytes.IndexByte(data[end:], '\n')
		if next < 0 {
			return -1
		}
		end += next + 1
	}
	if end == len(data) && !whole {
		return -1
	}
	return end
}

// Stats returns the counts of the records read so far.
func (r *Reader) Stats() Stats {
	s := r.assembler.Stats()
	s.Overruns, s.Malformed = r.overruns, r.malformed
	return s
}

// Close closes the file; closing again does nothing.
func (r *Reader) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	if err != nil {
		return &os.PathError{Op: "close", Path: r.path, Err: err}
	}
	return nil
}

// BootTime estimates the wall-clock time at which the kernel's log clock read 0, for
// Report.Time: now less the time since boot on CLOCK_MONOTONIC. The log clock (local_clock)
// and CLOCK_MONOTONIC both leave out time suspended but are not the same clock and drift
// apart slowly, so a long-running caller should call BootTime again from time to time.
func BootTime() (time.Time, error) {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Time{}, os.NewSyscallError("clock_gettime", err)
	}
	return bootTime(now, time.Duration(ts.Nano())), nil
}

// bootTime is when the clock that reads sinceBoot at now read 0.
func bootTime(now time.Time, sinceBoot time.Duration) time.Time {
	// Round(0) drops the monotonic reading, which belongs to this process, not to boot.
	return now.Round(0).Add(-sinceBoot)
}
