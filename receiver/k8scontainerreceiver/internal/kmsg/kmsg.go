// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package kmsg reads the kernel's reports of OOM kills from /dev/kmsg: for each kill, which
// process the kernel killed (PID, name, memory, oom_score_adj), under which constraint, and in
// which memory cgroup the limit was hit. Counting kills never depends on it (the kernel
// rate-limits most of each report, and the log can overrun); it only adds details.
//
// /dev/kmsg (Documentation/ABI/testing/dev-kmsg) gives one record per read:
//
//	<prio>,<seq>,<ts_usec>,<flags>[,<more fields>];<message>\n
//	 KEY=VALUE\n            (zero or more continuation lines, each beginning with a space)
//
// prio is the facility times 8 plus the syslog level, seq numbers the records (a gap means
// records were overwritten before they were read), ts_usec is the kernel's log clock in
// microseconds since boot, and bytes of the message that are not printable (and the
// backslash) are escaped as \xNN. ParseRecord parses one record.
//
// For each kill, mm/oom_kill.c prints (5.x and 6.x; "..." are many more records):
//
//	workload invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=998
//	...
//	oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=<container ID>,mems_allowed=0,oom_memcg=/kubepods/burstable/pod<UID>,task_memcg=/kubepods/burstable/pod<UID>/<container ID>,task=workload,pid=31533,uid=0
//	Memory cgroup out of memory: Killed process 31533 (workload) total-vm:1293432kB, anon-rss:63872kB, file-rss:1844kB, shmem-rss:0kB, UID:0 pgtables:220kB oom_score_adj:998
//
// The first line is about the task that allocated, not necessarily the victim. Everything
// before the "Killed process" line, the "oom-kill:" summary included, is printed at most 10
// times in 5 s for the whole host; the "Killed process" line is printed for every kill. When
// the kernel lets a header through again after suppressing some, it first prints
// "oom_kill_process: N callbacks suppressed". When the cgroup has memory.oom.group set (the
// kubelet sets it on cgroup v2), the kernel then prints "Tasks in <cgroup> are going to be
// killed due to memory.oom.group set" and a "Killed process" line for each process of the
// cgroup, without a summary of their own, and may print the first victim's again.
//
// An Assembler makes a Report of each "Killed process" line, with the summary of the same PID
// if it came just before; a Reader reads /dev/kmsg without blocking and feeds an Assembler.
//
// Only records of the kernel facility count: a process that writes to /dev/kmsg gets another
// facility, so it cannot forge a kill.
package kmsg

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"
)

// Record is one record of /dev/kmsg.
type Record struct {
	// Level is the syslog level: 0 (emergency) to 7 (debug).
	Level int
	// Facility is the syslog facility: 0 for the kernel's own messages.
	Facility int
	// Seq is the record's sequence number.
	Seq uint64
	// SinceBoot is the record's timestamp: the kernel's log clock, which starts at boot.
	SinceBoot time.Duration
	// Message is the text, its \xNN escapes undone.
	Message string
	// Dict holds the continuation lines' KEY=VALUE pairs (SUBSYSTEM, DEVICE, ...), nil when
	// there are none.
	Dict map[string]string
}

// ErrMalformed is the error of ParseRecord for bytes that are not a record.
var ErrMalformed = errors.New("malformed /dev/kmsg record")

// kernelFacility is the facility of the kernel's own messages (LOG_KERN).
const kernelFacility = 0

// ParseRecord parses one raw record of /dev/kmsg, continuation lines included. Prefix fields
// after the flags (such as caller=T123) are ignored, and a record may lack its final newline.
// The record does not keep raw.
func ParseRecord(raw []byte) (Record, error) {
	prefix, rest, ok := bytes.Cut(raw, []byte{';'})
	if !ok {
		return Record{}, fmt.Errorf("%w: no ';' ends the prefix", ErrMalformed)
	}
	prioText, prefix, _ := bytes.Cut(prefix, []byte{','})
	seqText, prefix, _ := bytes.Cut(prefix, []byte{','})
	tsText, _, _ := bytes.Cut(prefix, []byte{','})
	prio, ok := parseUint(prioText)
	if !ok || prio > math.MaxInt32 {
		return Record{}, fmt.Errorf("%w: priority %q", ErrMalformed, prioText)
	}
	seq, ok := parseUint(seqText)
	if !ok {
		return Record{}, fmt.Errorf("%w: sequence number %q", ErrMalformed, seqText)
	}
	ts, ok := parseUint(tsText)
	if !ok || ts > math.MaxInt64/uint64(time.Microsecond) {
		return Record{}, fmt.Errorf("%w: timestamp %q", ErrMalformed, tsText)
	}
	message, dict, _ := bytes.Cut(rest, []byte{'\n'})
	rec := Record{
		Level:     int(prio & 7),
		Facility:  int(prio >> 3),
		Seq:       seq,
		SinceBoot: time.Duration(ts) * time.Microsecond,
		Message:   unescape(message),
	}
	for len(dict) > 0 {
		var line []byte
		line, dict, _ = bytes.Cut(dict, []byte{'\n'})
		pair, ok := bytes.CutPrefix(line, []byte{' '})
		if !ok {
			return Record{}, fmt.Errorf("%w: line %q after the message does not begin with a space", ErrMalformed, line)
		}
		key, value, ok := bytes.Cut(pair, []byte{'='})
		if !ok {
			return Record{}, fmt.Errorf("%w: continuation line %q is not KEY=VALUE", ErrMalformed, line)
		}
		if rec.Dict == nil {
			rec.Dict = map[string]string{}
		}
		rec.Dict[unescape(key)] = unescape(value)
	}
	return rec, nil
}

// parseUint parses a decimal number of digits alone, as the kernel prints them.
func parseUint[T string | []byte](b T) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for i := range len(b) {
		c := b[i]
		d := uint64(c - '0')
		if c < '0' || c > '9' || n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// unescape undoes the kernel's \xNN escapes; a backslash not followed by x and two hex digits
// stays as it is, though the kernel never prints one (it escapes the backslash too).
func unescape(b []byte) string {
	i := bytes.IndexByte(b, '\\')
	if i < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i >= 0 {
		out = append(out, b[:i]...)
		b = b[i:]
		hi, okHi := fromHex(b, 2)
		lo, okLo := fromHex(b, 3)
		if len(b) >= 4 && b[1] == 'x' && okHi && okLo {
			out = append(out, hi<<4|lo)
			b = b[4:]
		} else {
			out = append(out, '\\')
			b = b[1:]
		}
		i = bytes.IndexByte(b, '\\')
	}
	return string(append(out, b...))
}

// fromHex is the value of the hex digit b[i], if there is one.
func fromHex(b []byte, i int) (byte, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
