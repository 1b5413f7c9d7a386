// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"math"
	"strings"
	"time"
)

// Report is what the kernel printed of one process that the OOM killer killed: a "Killed
// process" line and, unless it was rate-limited away, the summary before it.
type Report struct {
	// Seq and SinceBoot are those of the "Killed process" record.
	Seq       uint64
	SinceBoot time.Duration

	// PID and Process are the victim's PID and name (its comm, at most 15 bytes).
	PID     int
	Process string

	// Fields tells which of the numbers below the kernel printed; older kernels print fewer
	// (no UID, pgtables or oom_score_adj).
	Fields Fields
	// TotalVM, AnonRSS, FileRSS, ShmemRSS and PageTables are the victim's memory when it was
	// killed, in bytes (the kernel prints kB).
	TotalVM, AnonRSS, FileRSS, ShmemRSS, PageTables int64
	// UID is the victim's user ID, from the summary when the "Killed process" line lacks it.
	UID uint32
	// OOMScoreAdj is the victim's oom_score_adj.
	OOMScoreAdj int

	// Global tells a kill that no memory cgroup's limit caused ("Out of memory: Killed
	// process"): the memory of the node, or of a cpuset or memory policy, ran out. For kernels
	// that print no such prefix it is taken from the summary, and is false without one.
	Global bool

	// HasSummary tells whether the kernel printed the "oom-kill:" summary of the kill; it
	// does not when it rate-limits the report's header away, nor for the other processes of
	// a group kill (memory.oom.group). Without it, Constraint, OOMMemcg and TaskMemcg are "".
	HasSummary bool
	// Constraint is what ran out: CONSTRAINT_MEMCG (a memory cgroup's limit), CONSTRAINT_NONE
	// (the node's memory), CONSTRAINT_CPUSET or CONSTRAINT_MEMORY_POLICY.
	Constraint string
	// OOMMemcg is the path of the memory cgroup whose limit was hit, "" when none was: the
	// container's, its pod's or another ancestor's, below the root of the memory hierarchy
	// (cgroup v1) or of the cgroup filesystem (v2).
	OOMMemcg string
	// TaskMemcg is the path of the victim's memory cgroup: for a container's process, the
	// container's cgroup, whose last element is the container ID on the cgroupfs driver.
	TaskMemcg string
}

// Time is the wall-clock time of the kill, given boot from BootTime.
func (r Report) Time(boot time.Time) time.Time {
	return boot.Add(r.SinceBoot)
}

// Fields is a set of the numeric fields of a Report.
type Fields uint16

// The numeric fields of a Report.
const (
	FieldTotalVM Fields = 1 << iota
	FieldAnonRSS
	FieldFileRSS
	FieldShmemRSS
	FieldPageTables
	FieldUID
	FieldOOMScoreAdj
)

// Has tells whether f holds all of g.
func (f Fields) Has(g Fields) bool {
	return f&g == g
}

// Messages of the OOM report.
const (
	summaryPrefix  = "oom-kill:"
	killedMarker   = "Killed process "
	globalReason   = "Out of memory"
	suppressPrefix = "oom_kill_process: "
	suppressSuffix = " callbacks suppressed"
)

// summary is the "oom-kill:" line of a kill.
type summary struct {
	seq        uint64
	pid        int
	hasPID     bool
	uid        uint32
	hasUID     bool
	constraint string
	oomMemcg   string
	taskMemcg  string
}

// parseSummary parses an "oom-kill:" line. Its key=value pairs are split on commas, but
// mems_allowed and nodemask are node lists ("0-1,3"), and cgroup paths and the task's name may
// hold commas too: a piece without "=" belongs to the value before it. The one exception is
// the bare "global_oom" that stands for oom_memcg when no memory cgroup's limit was hit.
func parseSummary(msg string) (summary, bool) {
	body, ok := strings.CutPrefix(msg, summaryPrefix)
	if !ok {
		return summary{}, false
	}
	var s summary
	var key, value string
	valueStart := 0
	for start := 0; start <= len(body); {
		end := strings.IndexByte(body[start:], ',')
		if end < 0 {
			end = len(body)
		} else {
			end += start
		}
		piece := body[start:end]
		if eq := strings.IndexByte(piece, '='); eq >= 0 {
			s.set(key, value)
			key, valueStart = piece[:eq], start+eq+1
			value = body[valueStart:end]
		} else if piece == "global_oom" {
			s.set(key, value)
			key, value = "", ""
		} else if key != "" {
			value = body[valueStart:end]
		}
		start = end + 1
	}
	s.set(key, value)
	return s, true
}

// set keeps the value of a key that a Report takes; the others are of no use to it.
func (s *summary) set(key, value string) {
	switch key {
	case "constraint":
		s.constraint = value
	case "oom_memcg":
		s.oomMemcg = value
	case "task_memcg":
		s.taskMemcg = value
	case "pid":
		if n, ok := parseUint(value); ok && n <= math.MaxInt32 {
			s.pid, s.hasPID = int(n), true
		}
	case "uid":
		if n, ok := parseUint(value); ok && n <= math.MaxUint32 {
			s.uid, s.hasUID = uint32(n), true
		}
	}
}

// parseKilled parses a "<reason>: Killed process <pid> (<comm>) <key>:<value>, ..." line
// into a Report without its summary; older kernels print no reason, and hasReason tells.
func parseKilled(msg string) (r Report, hasReason, ok bool) {
	i := strings.Index(msg, killedMarker)
	if i < 0 {
		return Report{}, false, false
	}
	if i > 0 {
		reason, ok := strings.CutSuffix(msg[:i], ": ")
		if !ok {
			return Report{}, false, false
		}
		r.Global, hasReason = strings.HasPrefix(reason, globalReason), true
	}
	pidText, rest, ok := strings.Cut(msg[i+len(killedMarker):], " (")
	pid, okPID := parseUint(pidText)
	// The name may hold spaces and parentheses; the fields after it hold none of the latter.
	end := strings.LastIndexByte(rest, ')')
	if !ok || !okPID || pid > math.MaxInt32 || end < 0 {
		return Report{}, false, false
	}
	r.PID, r.Process = int(pid), rest[:end]
	fields := rest[end+1:]
	for fields != "" {
		var field string
		field, fields = nextField(fields)
		key, value, ok := strings.Cut(field, ":")
		if !ok {
			continue
		}
		r.setField(key, value)
	}
	return r, hasReason, true
}

// nextField cuts the first field off a list separated by commas and spaces.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeft(s, ", ")
	end := strings.IndexAny(s, ", ")
	if end < 0 {
		return s, ""
	}
	return s[:end], s[end:]
}

func (r *Report) setField(key, value string) {
	switch key {
	case "total-vm":
		r.setBytes(FieldTotalVM, &r.TotalVM, value)
	case "anon-rss":
		r.setBytes(FieldAnonRSS, &r.AnonRSS, value)
	case "file-rss":
		r.setBytes(FieldFileRSS, &r.FileRSS, value)
	case "shmem-rss":
		r.setBytes(FieldShmemRSS, &r.ShmemRSS, value)
	case "pgtables":
		r.setBytes(FieldPageTables, &r.PageTables, value)
	case "UID":
		if n, ok := parseUint(value); ok && n <= math.MaxUint32 {
			r.UID = uint32(n)
			r.Fields |= FieldUID
		}
	case "oom_score_adj":
		negative := strings.HasPrefix(value, "-")
		n, ok := parseUint(strings.TrimPrefix(value, "-"))
		if !ok || n > math.MaxInt16+1 {
			return
		}
		r.OOMScoreAdj = int(n)
		if negative {
			r.OOMScoreAdj = -r.OOMScoreAdj
		}
		r.Fields |= FieldOOMScoreAdj
	}
}

// setBytes sets *to from a "<n>kB" value.
func (r *Report) setBytes(field Fields, to *int64, value string) {
	kB, ok := strings.CutSuffix(value, "kB")
	n, okN := parseUint(kB)
	if !ok || !okN || n > math.MaxInt64/1024 {
		return
	}
	*to = int64(n) * 1024
	r.Fields |= field
}

// parseSuppressed parses "oom_kill_process: <n> callbacks suppressed", which the kernel
// prints when it lets a report's header through after suppressing n; the same message of
// another function is about other messages.
func parseSuppressed(msg string) (uint64, bool) {
	rest, ok := strings.CutPrefix(msg, suppressPrefix)
	if !ok {
		return 0, false
	}
	n, ok := strings.CutSuffix(rest, suppressSuffix)
	if !ok {
		return 0, false
	}
	return parseUint(n)
}
