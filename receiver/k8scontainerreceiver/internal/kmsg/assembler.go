// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import "slices"

const (
	// summaryWindow is how many records after its summary a "Killed process" line may come.
	// The kernel prints one right after the other, both under oom_lock, but records of other
	// CPUs may come between them.
	summaryWindow = 64
	// maxPendingSummaries bounds the summaries waiting for their "Killed process" line. OOM
	// kills are serialized by oom_lock, so more than one waits only when such a line is
	// missing.
	maxPendingSummaries = 4
)

// Stats are the counts of an Assembler or a Reader since it was made.
type Stats struct {
	// Records is how many records were read.
	Records uint64
	// LostRecords is how many records the sequence numbers skipped: the kernel overwrote them
	// before they were read. Kills among them are missing from the Reports.
	LostRecords uint64
	// Overruns is how many reads of a Reader found that the kernel had overwritten the
	// records still to be read (EPIPE); LostRecords counts those records.
	Overruns uint64
	// Malformed is how many records a Reader could not parse.
	Malformed uint64
	// Reports is how many Reports were made, ReportsWithoutSummary how many of them have no
	// summary.
	Reports               uint64
	ReportsWithoutSummary uint64
	// SuppressedHeaders is the sum of the "oom_kill_process: N callbacks suppressed" counts:
	// how many reports' headers, summaries included, the kernel did not print. The kernel
	// prints the count when it next prints a header, so it lags the Reports without summary
	// (which also count the other processes of group kills).
	SuppressedHeaders uint64
	// UnmatchedSummaries is how many summaries were dropped unpaired: without a PID, replaced
	// by a newer one of the same PID, pushed out by newer ones, or with no "Killed process"
	// line of their PID within summaryWindow records.
	UnmatchedSummaries uint64
}

// Assembler makes Reports of records given in the order of their sequence numbers; the zero
// value is ready for use, by one goroutine.
type Assembler struct {
	// pending are the summaries waiting for their "Killed process" line, oldest first.
	pending []summary
	lastSeq uint64
	started bool
	stats   Stats
}

// Add takes the next record and returns the Report that it completes, if any. Only the
// "Killed process" record of a kill completes a Report, with the summary of its PID if one
// came in the summaryWindow records before it.
func (a *Assembler) Add(rec Record) (Report, bool) {
	a.stats.Records++
	if a.started && rec.Seq > a.lastSeq {
		a.stats.LostRecords += rec.Seq - a.lastSeq - 1
	}
	a.started, a.lastSeq = true, rec.Seq
	a.expire(rec.Seq)
	if rec.Facility != kernelFacility {
		return Report{}, false
	}
	msg := rec.Message
	if s, ok := parseSummary(msg); ok {
		s.seq = rec.Seq
		a.addSummary(s)
		return Report{}, false
	}
	if n, ok := parseSuppressed(msg); ok {
		a.stats.SuppressedHeaders += n
		return Report{}, false
	}
	r, hasReason, ok := parseKilled(msg)
	if !ok {
		return Report{}, false
	}
	r.Seq, r.SinceBoot = rec.Seq, rec.SinceBoot
	if s, ok := a.takeSummary(r.PID); ok {
		r.HasSummary = true
		r.Constraint, r.OOMMemcg, r.TaskMemcg = s.constraint, s.oomMemcg, s.taskMemcg
		if !r.Fields.Has(FieldUID) && s.hasUID {
			r.UID = s.uid
			r.Fields |= FieldUID
		}
		if !hasReason {
			r.Global = s.oomMemcg == ""
		}
	} else {
		a.stats.ReportsWithoutSummary++
	}
	a.stats.Reports++
	return r, true
}

// Stats returns the counts so far; Overruns and Malformed are a Reader's and 0 here.
func (a *Assembler) Stats() Stats {
	return a.stats
}

// expire drops the summaries that are too old to be paired at seq, and those from after seq,
// which a replay of records leaves behind.
func (a *Assembler) expire(seq uint64) {
	kept := a.pending[:0]
	for _, s := range a.pending {
		if seq < s.seq || seq-s.seq > summaryWindow {
			a.stats.UnmatchedSummaries++
			continue
		}
		kept = append(kept, s)
	}
	clear(a.pending[len(kept):])
	a.pending = kept
}

// addSummary keeps s until its "Killed process" line comes. A summary without a PID cannot
// be paired; a newer one of the same PID replaces the older.
func (a *Assembler) addSummary(s summary) {
	if !s.hasPID {
		a.stats.UnmatchedSummaries++
		return
	}
	if _, ok := a.takeSummary(s.pid); ok {
		a.stats.UnmatchedSummaries++
	}
	if len(a.pending) == maxPendingSummaries {
		a.stats.UnmatchedSummaries++
		a.pending = slices.Delete(a.pending, 0, 1)
	}
	if a.pending == nil {
		a.pending = make([]summary, 0, maxPendingSummaries)
	}
	a.pending = append(a.pending, s)
}

// takeSummary removes and returns the pending summary of pid.
func (a *Assembler) takeSummary(pid int) (summary, bool) {
	for i, s := range a.pending {
		if s.pid == pid {
			a.pending = slices.Delete(a.pending, i, i+1)
			return s, true
		}
	}
	return summary{}, false
}
