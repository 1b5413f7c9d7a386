// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/cgroupoom"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kmsg"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/oomscope"
)

// With kernel_log, each scrape reads the kernel's new OOM-kill reports and keeps, by the container
// ID of the victim's cgroup, who the victim was: a kill record of that container then names the
// process (process.pid, process.executable.name) and says whether the kernel's report was found
// (k8s.oom.kernel_report). Counting never depends on it.

const (
	// keepKernelReports is how long a report waits for its kill to be reported: the pod status
	// shows a kill a scrape or two later; a collector restart can take longer.
	keepKernelReports = 10 * time.Minute
	// maxVictimsPerContainer bounds what is kept of one container's reports: a container whose
	// processes are killed over and over keeps its newest.
	maxVictimsPerContainer = 16
	// reportBefore is how long before its container's end the report of the kill that ended it
	// may be: the kill of PID 1 comes a moment before the end; that of a child, whose PID 1 then
	// exited by itself, may come longer before.
	reportBefore = 10 * time.Second
)

// The values of k8s.oom.kernel_report.
const (
	kernelReportFound      = "found"
	kernelReportSuppressed = "suppressed"
	kernelReportNotFound   = "not_found"
)

// victim is one process the kernel reported killed.
type victim struct {
	at      time.Time
	pid     int
	process string
	// oomMemcg is the cgroup whose limit was hit, "" for a kill by the node running out.
	oomMemcg  string
	taskMemcg string
	global    bool
}

// kernelLog is what the scraper keeps of the kernel's reports.
type kernelLog struct {
	reader *kmsg.Reader
	boot   time.Time
	// victims are the recent reports with a summary, by the container ID of the victim's cgroup.
	victims map[string][]victim
	// headless are the times of recent reports without a summary, whose victim's cgroup the
	// kernel did not print (it rate-limited the report's header away).
	headless []time.Time
	problem  string
}

// startKernelLog opens the kernel's log from its oldest record still there, so that kills
// reported while the collector was down are found too.
func (s *Scraper) startKernelLog() error {
	boot, err := kmsg.BootTime()
	if err != nil {
		return err
	}
	r, err := kmsg.Open(s.cfg.KernelLog.Path, true)
	if err != nil {
		return err
	}
	s.kernel = &kernelLog{reader: r, boot: boot, victims: map[string][]victim{}}
	return nil
}

// readKernelLog takes the reports the kernel printed since the last reading.
func (s *Scraper) readKernelLog() {
	k := s.kernel
	if k == nil {
		return
	}
	reports, err := k.reader.ReadAvailable()
	problem := ""
	if err != nil {
		problem = err.Error()
	}
	if problem != "" && problem != k.problem {
		s.logger.Warn("Reading the kernel's OOM-kill reports failed: kill records name no victim", zap.Error(err))
	}
	k.problem = problem
	for _, r := range reports {
		at := r.Time(k.boot)
		if !r.HasSummary {
			k.headless = append(k.headless, at)
			continue
		}
		id := containerIDOf(r.TaskMemcg)
		if id == "" {
			continue
		}
		vs := append(k.victims[id], victim{at: at, pid: r.PID, process: r.Process, oomMemcg: r.OOMMemcg, taskMemcg: r.TaskMemcg, global: r.Global})
		if len(vs) > maxVictimsPerContainer {
			vs = vs[len(vs)-maxVictimsPerContainer:]
		}
		k.victims[id] = vs
	}
	oldest := s.deps.Now().Add(-keepKernelReports)
	for id, vs := range k.victims {
		if vs[len(vs)-1].at.Before(oldest) {
			delete(k.victims, id)
		}
	}
	keep := k.headless[:0]
	for _, at := range k.headless {
		if !at.Before(oldest) {
			keep = append(keep, at)
		}
	}
	k.headless = keep
}

// containerIDOf is the container ID of a container's cgroup path, "" when the path is not a
// container's.
func containerIDOf(cgroup string) string {
	name := cgroup[strings.LastIndexByte(cgroup, '/')+1:]
	if name == "" || strings.HasSuffix(name, ".slice") || strings.HasPrefix(name, "pod") || strings.HasPrefix(name, "kubepods") {
		return ""
	}
	return cgroupoom.ContainerIDOf(name)
}

// victimOf returns the newest victim the kernel reported in the container between from and to,
// and what k8s.oom.kernel_report says.
func (s *Scraper) victimOf(containerID string, from, to time.Time) (victim, string) {
	k := s.kernel
	find := func() (victim, bool) {
		vs := k.victims[containerID]
		for i := len(vs) - 1; i >= 0; i-- {
			if !vs[i].at.Before(from) && !vs[i].at.After(to) {
				return vs[i], true
			}
		}
		return victim{}, false
	}
	if v, ok := find(); ok {
		return v, kernelReportFound
	}
	// The report may have come after this scrape's reading.
	s.readKernelLog()
	if v, ok := find(); ok {
		return v, kernelReportFound
	}
	for _, at := range k.headless {
		if !at.Before(from) && !at.After(to) {
			return victim{}, kernelReportSuppressed
		}
	}
	return victim{}, kernelReportNotFound
}

// victimOptions are the record attributes of a kill's victim in the kernel's report.
func victimOptions(v victim, report string) []metadata.EventAttributeOption {
	opts := []metadata.EventAttributeOption{metadata.WithK8sOomKernelReportEventAttribute(report)}
	if report == kernelReportFound {
		opts = append(opts, metadata.WithProcessPidEventAttribute(int64(v.pid)), metadata.WithProcessExecutableNameEventAttribute(v.process))
	}
	return opts
}

// kernelScope looks for the kernel's report of a kill in the container between from and to,
// with kernel_log. The report, when found, names the cgroup whose limit was hit, which gives
// the scope in place of the counts' (scope, ok): the kernel's word on that kill alone.
func (s *Scraper) kernelScope(p *containerstate.Pod, containerID string, from, to time.Time, scope oomscope.Scope, ok bool) (victim, string, oomscope.Scope, bool) {
	if s.kernel == nil {
		return victim{}, "", scope, ok
	}
	v, report := s.victimOf(containerID, from, to)
	if report == kernelReportFound {
		scope, ok = oomscope.OfReport(v.oomMemcg, v.taskMemcg, v.global, p.MemoryLimit > 0)
	}
	return v, report, scope, ok
}
