// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"
)

const mib = 1 << 20

// renderTable writes one line per container of a workload: its namespace and workload, its
// memory against its limit, its restarts, the OOM kills that ended it, the processes OOM-killed
// while it lived, and why the latest kill happened, with the limit the kills suggest.
func renderTable(w io.Writer, rows []row, why map[containerKey]explanation) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// AlignRight suits the numbers; the names are padded to one width here so they read as a
	// left-aligned block in the first cell.
	nsW, wlW, ctrW := len("NAMESPACE"), len("WORKLOAD"), len("CONTAINER")
	for _, r := range rows {
		nsW, wlW, ctrW = max(nsW, len(r.Namespace)), max(wlW, len(r.Workload)), max(ctrW, len(r.Container))
	}
	left := func(ns, wl, ctr string) string {
		return fmt.Sprintf("%-*s  %-*s  %-*s", nsW, ns, wlW, wl, ctrW, ctr)
	}
	p := &printer{w: tw}
	// The explanation follows the last tab: left-aligned, as wide as it is.
	p.printf("%s\tWORKING SET\tLIMIT\tUSED\tRESTARTS\tOOM KILLS\tPROCESS KILLS\t  WHY (LAST KILL)\n", left("NAMESPACE", "WORKLOAD", "CONTAINER"))
	for _, r := range rows {
		p.printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t  %s\n", left(r.Namespace, r.Workload, r.Container),
			orDash(r.HasWorkingSet, formatMiB(r.WorkingSet)),
			orDash(r.HasLimit, formatMiB(r.Limit)),
			orDash(r.HasUtilization, formatPercent(r.Utilization)),
			orDash(r.HasRestarts, formatCount(r.Restarts)),
			orDash(r.HasOOMKills, formatCount(r.OOMKills)),
			orDash(r.HasProcessKills, formatCount(r.ProcessKills)),
			whyText(r, why))
	}
	if p.err != nil {
		return p.err
	}
	return tw.Flush()
}

// printer keeps the first write error, so a screen is written without checking every line.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// whyText is the explanation of a container's latest kill, and the limit its kills suggest.
func whyText(r row, why map[containerKey]explanation) string {
	e, ok := why[r.containerKey]
	if !ok {
		return "-"
	}
	s := e.String()
	if r.HasSuggested {
		s += ", suggested limit " + formatMiB(r.Suggested)
	}
	return s
}

func orDash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}

func formatMiB(bytes float64) string {
	return strconv.FormatFloat(bytes/mib, 'f', 1, 64) + " MiB"
}

func formatPercent(ratio float64) string {
	return strconv.FormatFloat(ratio*100, 'f', 0, 64) + "%"
}

func formatCount(v float64) string {
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// change is an OOM-kill count that went up between two reads of the exporter.
type change struct {
	At       time.Duration // since the workload was created
	Key      containerKey
	From, To float64
}

func (c change) String() string {
	return fmt.Sprintf("+%-6s %s: oom_kills %s -> %s", c.At.Round(100*time.Millisecond), c.Key,
		formatCount(c.From), formatCount(c.To))
}

// countChanges compares two reads and returns the containers whose OOM-kill count rose, sorted.
// A container seen for the first time with a count above zero counts as a rise from zero.
func countChanges(before map[containerKey]float64, rows []row, at time.Duration) []change {
	var out []change
	for _, r := range rows {
		if !r.HasOOMKills {
			continue
		}
		if prev := before[r.containerKey]; r.OOMKills > prev {
			out = append(out, change{At: at, Key: r.containerKey, From: prev, To: r.OOMKills})
		}
	}
	return out
}

// oomCounts returns the OOM-kill count of every row that has one.
func oomCounts(rows []row) map[containerKey]float64 {
	out := make(map[containerKey]float64, len(rows))
	for _, r := range rows {
		if r.HasOOMKills {
			out[r.containerKey] = r.OOMKills
		}
	}
	return out
}

// screen is everything one refresh shows.
type screen struct {
	Node        string
	Elapsed     time.Duration
	MetricsURL  string
	BackendLog  string
	Rows        []row
	Why         map[containerKey]explanation
	Err         error
	Changes     []change // newest last
	FirstOOM    map[containerKey]time.Duration
	MaxChanges  int
	ClearScreen bool
}

// render writes the screen: a header, the table, and the latest count changes.
func (s screen) render(w io.Writer) error {
	p := &printer{w: w}
	if s.ClearScreen {
		p.printf("\033[H\033[2J")
	}
	p.printf("oomwatch demo: node %s, %s since the workload was created. Ctrl-C deletes it, stops the collectors and tears the cluster down.\n",
		s.Node, s.Elapsed.Round(time.Second))
	p.printf("counts read from %s; the OTLP backend writes what it receives to %s\n\n", s.MetricsURL, s.BackendLog)
	if s.Err != nil {
		p.printf("reading the exporter: %v\n\n", s.Err)
	}
	if len(s.Rows) == 0 {
		p.printf("(no container reported yet)\n")
	} else if p.err == nil {
		p.err = renderTable(w, s.Rows, s.Why)
	}
	if len(s.FirstOOM) > 0 {
		p.printf("\nfirst OOM kill counted, after the workload was created:\n")
		for _, k := range slices.SortedFunc(maps.Keys(s.FirstOOM), compareKeys) {
			p.printf("  %-40s +%s\n", k, s.FirstOOM[k].Round(100*time.Millisecond))
		}
	}
	changes := s.Changes
	if s.MaxChanges > 0 && len(changes) > s.MaxChanges {
		changes = changes[len(changes)-s.MaxChanges:]
	}
	if len(changes) > 0 {
		p.printf("\nlatest OOM-kill counts:\n")
		for _, c := range changes {
			p.printf("  %s\n", c)
		}
	}
	p.printf("\ndemo-batch/thumbnailer/resize: its child processes are OOM-killed while PID 1 lives; the\n")
	p.printf("pod status never shows those kills: PROCESS KILLS counts them (the kubelet's counters).\n")
	return p.err
}
