// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kmsg

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.want.json files")

// golden is what an Assembler makes of a testdata/*.kmsg file.
type golden struct {
	Reports []Report
	Stats   Stats
}

// TestAssemblerHost feeds records copied from a host's /dev/kmsg (kernel 6.18, cgroup v1) to
// an Assembler and compares its Reports and Stats with testdata/<name>.want.json.
//   - memcg-kill: one kill's whole report;
//   - suppressed: a kill, a burst of kills whose headers the kernel suppressed, the count it
//     printed of them, and the next kill;
//   - continuation: the end of a report, then records with continuation lines.
func TestAssemblerHost(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("testdata/*.kmsg")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			got := assemble(readRecords(t, path))
			wantPath := strings.TrimSuffix(path, ".kmsg") + ".want.json"
			if *update {
				data, err := json.MarshalIndent(got, "", "  ")
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(wantPath, append(data, '\n'), 0o644))
			}
			data, err := os.ReadFile(wantPath)
			require.NoError(t, err)
			var want golden
			require.NoError(t, json.Unmarshal(data, &want))
			require.Equal(t, want, got)
		})
	}
}

func assemble(records []Record) golden {
	var a Assembler
	g := golden{Reports: []Report{}}
	for _, rec := range records {
		if r, ok := a.Add(rec); ok {
			g.Reports = append(g.Reports, r)
		}
	}
	g.Stats = a.Stats()
	return g
}

// rec is a raw record of the kernel at level info, its timestamp a millisecond per seq.
func rec(seq uint64, message string) string {
	return fmt.Sprintf("6,%d,%d,-;%s\n", seq, seq*1000, message)
}

// noise is n records that are not about OOM kills, from seq on.
func noise(seq uint64, n int) []string {
	var raws []string
	for i := range n {
		raws = append(raws, rec(seq+uint64(i), "[  123]     0   123   306734      456      128      328         0    86016        0             0 pause"))
	}
	return raws
}

const (
	podMemcg  = "/kubepods/burstable/pod8079afbd-faa6-4cd4-b6a9-e6c55317325d"
	taskMemcg = podMemcg + "/496bc851374fd4ac368f03759bd0be946fb651ebe96bcb2e12abeb434bc9c290"
	memcgSumm = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=496bc851374fd4ac368f03759bd0be946fb651ebe96bcb2e12abeb434bc9c290,mems_allowed=0,oom_memcg=" + podMemcg + ",task_memcg=" + taskMemcg + ",task=workload,pid=31533,uid=0"
	memcgKill = "Memory cgroup out of memory: Killed process 31533 (workload) total-vm:10532kB, anon-rss:8012kB, file-rss:1024kB, shmem-rss:0kB, UID:0 pgtables:60kB oom_score_adj:995"
	allFields = FieldTotalVM | FieldAnonRSS | FieldFileRSS | FieldShmemRSS | FieldPageTables | FieldUID | FieldOOMScoreAdj
	rssFields = FieldTotalVM | FieldAnonRSS | FieldFileRSS | FieldShmemRSS
	kB        = 1024
)

// memcgReport is the Report of memcgSumm and memcgKill, the latter at seq.
func memcgReport(seq uint64) Report {
	return Report{
		Seq: seq, SinceBoot: time.Duration(seq) * time.Millisecond,
		PID: 31533, Process: "workload", Fields: allFields,
		TotalVM: 10532 * kB, AnonRSS: 8012 * kB, FileRSS: 1024 * kB, PageTables: 60 * kB,
		OOMScoreAdj: 995, HasSummary: true,
		Constraint: "CONSTRAINT_MEMCG", OOMMemcg: podMemcg, TaskMemcg: taskMemcg,
	}
}

func TestAssembler(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		raws  []string
		want  []Report
		stats Stats
	}{
		{
			name:  "memcg kill",
			raws:  []string{rec(1, "workload invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=995"), rec(2, memcgSumm), rec(3, memcgKill), rec(4, "oom_reaper: reaped process 31533 (workload), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB")},
			want:  []Report{memcgReport(3)},
			stats: Stats{Records: 4, Reports: 1},
		},
		{
			name: "global kill",
			raws: []string{
				rec(1, "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,global_oom,task_memcg=/system.slice/db.service,task=db,pid=812,uid=999"),
				rec(2, "Out of memory: Killed process 812 (db) total-vm:4096kB, anon-rss:2048kB, file-rss:0kB, shmem-rss:0kB, UID:999 pgtables:12kB oom_score_adj:-998"),
			},
			want: []Report{{
				Seq: 2, SinceBoot: 2 * time.Millisecond, PID: 812, Process: "db", Fields: allFields,
				TotalVM: 4096 * kB, AnonRSS: 2048 * kB, PageTables: 12 * kB, UID: 999, OOMScoreAdj: -998,
				Global: true, HasSummary: true, Constraint: "CONSTRAINT_NONE", TaskMemcg: "/system.slice/db.service",
			}},
			stats: Stats{Records: 2, Reports: 1},
		},
		{
			name: "kill of the allocating task",
			raws: []string{rec(1, "Out of memory (oom_kill_allocating_task): Killed process 5 (a) total-vm:4kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0")},
			want: []Report{{
				Seq: 1, SinceBoot: time.Millisecond, PID: 5, Process: "a", Fields: allFields,
				TotalVM: 4096, AnonRSS: 4096, PageTables: 4096, Global: true,
			}},
			stats: Stats{Records: 1, Reports: 1, ReportsWithoutSummary: 1},
		},
		{
			name: "summary fields in another order, some missing",
			raws: []string{
				rec(1, "oom-kill:pid=31533,task_memcg="+taskMemcg+",oom_memcg="+podMemcg+",constraint=CONSTRAINT_MEMCG"),
				rec(2, memcgKill),
			},
			want:  []Report{memcgReport(2)},
			stats: Stats{Records: 2, Reports: 1},
		},
		{
			name: "older kernel: no reason, no UID, pgtables or oom_score_adj",
			raws: []string{
				rec(1, "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=stress,pid=77,uid=1000"),
				rec(2, "Killed process 77 (stress) total-vm:8kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB"),
				rec(3, "Killed process 78 (stress) total-vm:8kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB"),
			},
			want: []Report{
				{
					Seq: 2, SinceBoot: 2 * time.Millisecond, PID: 77, Process: "stress", Fields: rssFields | FieldUID,
					TotalVM: 8192, AnonRSS: 4096, UID: 1000,
					Global: true, HasSummary: true, Constraint: "CONSTRAINT_NONE", TaskMemcg: "/user.slice",
				},
				{Seq: 3, SinceBoot: 3 * time.Millisecond, PID: 78, Process: "stress", Fields: rssFields, TotalVM: 8192, AnonRSS: 4096},
			},
			stats: Stats{Records: 3, Reports: 2, ReportsWithoutSummary: 1},
		},
		{
			name: "commas in cgroup paths and the name, spaces and parentheses in the name, escaped bytes",
			raws: []string{
				rec(1, `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/a,b/c,task_memcg=/a,b/c/d,task=x (y),z,pid=9,uid=0`),
				rec(2, `Memory cgroup out of memory: Killed process 9 (x (y),z\x09) total-vm:4kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0`),
			},
			want: []Report{{
				Seq: 2, SinceBoot: 2 * time.Millisecond, PID: 9, Process: "x (y),z\t", Fields: allFields,
				TotalVM: 4096, AnonRSS: 4096, PageTables: 4096,
				HasSummary: true, Constraint: "CONSTRAINT_MEMCG", OOMMemcg: "/a,b/c", TaskMemcg: "/a,b/c/d",
			}},
			stats: Stats{Records: 2, Reports: 1},
		},
		{
			name: "Killed process line without summary",
			raws: []string{rec(1, memcgKill)},
			want: []Report{{
				Seq: 1, SinceBoot: time.Millisecond, PID: 31533, Process: "workload", Fields: allFields,
				TotalVM: 10532 * kB, AnonRSS: 8012 * kB, FileRSS: 1024 * kB, PageTables: 60 * kB, OOMScoreAdj: 995,
			}},
			stats: Stats{Records: 1, Reports: 1, ReportsWithoutSummary: 1},
		},
		{
			name:  "summary whose Killed process line comes too late",
			raws:  append(append([]string{rec(1, memcgSumm)}, noise(2, summaryWindow)...), rec(2+summaryWindow, memcgKill)),
			want:  []Report{{Seq: 2 + summaryWindow, SinceBoot: (2 + summaryWindow) * time.Millisecond, PID: 31533, Process: "workload", Fields: allFields, TotalVM: 10532 * kB, AnonRSS: 8012 * kB, FileRSS: 1024 * kB, PageTables: 60 * kB, OOMScoreAdj: 995}},
			stats: Stats{Records: 2 + summaryWindow, Reports: 1, ReportsWithoutSummary: 1, UnmatchedSummaries: 1},
		},
		{
			name:  "summary whose Killed process line comes last in the window",
			raws:  append(append([]string{rec(1, memcgSumm)}, noise(2, summaryWindow-1)...), rec(1+summaryWindow, memcgKill)),
			want:  []Report{memcgReport(1 + summaryWindow)},
			stats: Stats{Records: 1 + summaryWindow, Reports: 1},
		},
		{
			name:  "summary of another PID",
			raws:  []string{rec(1, strings.Replace(memcgSumm, "pid=31533", "pid=31534", 1)), rec(2, memcgKill)},
			want:  []Report{{Seq: 2, SinceBoot: 2 * time.Millisecond, PID: 31533, Process: "workload", Fields: allFields, TotalVM: 10532 * kB, AnonRSS: 8012 * kB, FileRSS: 1024 * kB, PageTables: 60 * kB, OOMScoreAdj: 995}},
			stats: Stats{Records: 2, Reports: 1, ReportsWithoutSummary: 1},
		},
		{
			name:  "summary without PID",
			raws:  []string{rec(1, "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null)")},
			stats: Stats{Records: 1, UnmatchedSummaries: 1},
		},
		{
			name: "two kills interleaved",
			raws: []string{
				rec(1, memcgSumm),
				rec(2, strings.Replace(memcgSumm, "pid=31533", "pid=40", 1)),
				rec(3, memcgKill),
				rec(4, "Memory cgroup out of memory: Killed process 40 (other) total-vm:4kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0"),
			},
			want: []Report{
				memcgReport(3),
				{
					Seq: 4, SinceBoot: 4 * time.Millisecond, PID: 40, Process: "other", Fields: allFields,
					TotalVM: 4096, AnonRSS: 4096, PageTables: 4096,
					HasSummary: true, Constraint: "CONSTRAINT_MEMCG", OOMMemcg: podMemcg, TaskMemcg: taskMemcg,
				},
			},
			stats: Stats{Records: 4, Reports: 2},
		},
		{
			name:  "a newer summary of the same PID replaces the older",
			raws:  []string{rec(1, strings.Replace(memcgSumm, "uid=0", "uid=5", 1)), rec(2, memcgSumm), rec(3, memcgKill)},
			want:  []Report{memcgReport(3)},
			stats: Stats{Records: 3, Reports: 1, UnmatchedSummaries: 1},
		},
		{
			name: "pending summaries are bounded",
			raws: []string{
				rec(1, memcgSumm),
				rec(2, strings.Replace(memcgSumm, "pid=31533", "pid=2", 1)),
				rec(3, strings.Replace(memcgSumm, "pid=31533", "pid=3", 1)),
				rec(4, strings.Replace(memcgSumm, "pid=31533", "pid=4", 1)),
				rec(5, strings.Replace(memcgSumm, "pid=31533", "pid=5", 1)),
				rec(6, memcgKill),
			},
			want:  []Report{{Seq: 6, SinceBoot: 6 * time.Millisecond, PID: 31533, Process: "workload", Fields: allFields, TotalVM: 10532 * kB, AnonRSS: 8012 * kB, FileRSS: 1024 * kB, PageTables: 60 * kB, OOMScoreAdj: 995}},
			stats: Stats{Records: 6, Reports: 1, ReportsWithoutSummary: 1, UnmatchedSummaries: 1},
		},
		{
			name: "suppressed callbacks of oom_kill_process count, of other functions not",
			raws: []string{
				rec(1, "oom_kill_process: 8 callbacks suppressed"),
				rec(2, "net_ratelimit: 3 callbacks suppressed"),
				rec(3, "oom_kill_process: 2 callbacks suppressed"),
				rec(4, "oom_kill_process: many callbacks suppressed"),
			},
			stats: Stats{Records: 4, SuppressedHeaders: 10},
		},
		{
			name: "sequence gaps",
			raws: []string{
				rec(10, "a"), rec(11, "b"), rec(15, "c"), rec(15, "c again"), rec(3, "replayed"), rec(5, "d"),
			},
			stats: Stats{Records: 6, LostRecords: 3 + 1},
		},
		{
			name: "a process writing to /dev/kmsg cannot forge a kill",
			raws: []string{
				"14,1,1000,-;" + memcgSumm + "\n",
				"12,2,2000,-;" + memcgKill + "\n",
				"12,3,3000,-;oom_kill_process: 8 callbacks suppressed\n",
			},
			stats: Stats{Records: 3},
		},
		{
			name: "lines that are not kills",
			raws: []string{
				rec(1, "workload invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=998"),
				rec(2, "Memory cgroup out of memory: Kill process 5 (a) score 1000 or sacrifice child"),
				rec(3, "Killed process x (a) total-vm:4kB"),
				rec(4, "Killed process 5 a"),
				rec(5, "Killed process 5 (a"),
				rec(6, "xKilled process 5 (a)"),
				rec(7, "Memory cgroup out of memory: Killed process 99999999999 (a)"),
			},
			stats: Stats{Records: 7},
		},
		{
			name:  "fields that do not parse are left out",
			raws:  []string{rec(1, "Killed process 5 (a) total-vm:4MB, anon-rss:xkB, file-rss, shmem-rss:99999999999999999kB, UID:-1 pgtables:4kB oom_score_adj:99999 x:1")},
			want:  []Report{{Seq: 1, SinceBoot: time.Millisecond, PID: 5, Process: "a", Fields: FieldPageTables, PageTables: 4096}},
			stats: Stats{Records: 1, Reports: 1, ReportsWithoutSummary: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var records []Record
			for _, raw := range tc.raws {
				r, err := ParseRecord([]byte(raw))
				require.NoError(t, err)
				records = append(records, r)
			}
			got := assemble(records)
			if tc.want == nil {
				tc.want = []Report{}
			}
			require.Equal(t, golden{Reports: tc.want, Stats: tc.stats}, got)
		})
	}
}

func TestFields(t *testing.T) {
	t.Parallel()
	f := FieldUID | FieldAnonRSS
	require.True(t, f.Has(FieldUID))
	require.True(t, f.Has(FieldUID|FieldAnonRSS))
	require.False(t, f.Has(FieldUID|FieldPageTables))
	require.False(t, f.Has(FieldOOMScoreAdj))
}

func TestReportTime(t *testing.T) {
	t.Parallel()
	boot := time.Date(2025, 12, 5, 0, 0, 0, 0, time.UTC)
	r := Report{SinceBoot: 33685*time.Second + 101010*time.Microsecond}
	require.Equal(t, time.Date(2025, 12, 5, 9, 21, 25, 101010000, time.UTC), r.Time(boot))
}
