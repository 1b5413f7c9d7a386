// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workload"
)

// The scrape: every tracked container with the points of its OOM-kill flag since the last
// scrape, its restart count, memory resources and the kubelet's stats, top to bottom, from the
// tracker's drain to the resource the metrics builder emits.

// Scrape reports every tracked container. A kubelet failure costs the stats of this scrape
// only; it is counted and logged when it changes, not returned, since the scraper controller
// would log a returned error on every scrape.
func (s *Scraper) Scrape(ctx context.Context) (pmetric.Metrics, error) {
	now := s.deps.Now()
	clear(s.stats)
	processOK := false
	// A kubelet that did not answer for the Summary is not asked again in the same scrape.
	kubeletOK := s.kubelet != nil && s.collectStats(ctx)
	if s.cfg.Metrics.K8sContainerProcessOomKilled.Enabled && (kubeletOK || s.cgroups != nil) {
		processOK = s.collectProcessKills(ctx)
	}
	nowTS := pcommon.NewTimestampFromTime(now)
	if s.lastScrape == 0 {
		s.lastScrape = s.started
	}
	containers := 0
	// Whatever ended before now is reported by this scrape or was by an earlier one. Recorded
	// before the scrape is handed on, with nothing observed in between: a restart never reports
	// a termination twice, at the cost of taking as history what a scrape lost by a crash in
	// between had reported.
	saveHorizon := func(ended []termination.Key) { s.saveHorizon(ctx, now, ended) }
	s.tracker.DrainAfter(now, saveHorizon, func(p *containerstate.Pod, c *containerstate.Container, points []containerstate.Point) {
		containers++
		s.record(nowTS, p, c, points, processOK)
	})
	if s.systemOOMs != nil {
		s.recordSystemOOMs(ctx, nowTS)
	}
	s.lastScrape = nowTS
	s.telemetry.K8sContainerContainersTracked.Record(ctx, int64(containers))
	s.rememberWorkingSets()
	s.emitLogs(ctx)
	return s.mb.Emit(), nil
}

// record emits one container's resource: its attributes, the points of its OOM-kill flag, the
// pod status' metrics, the process kills and the kubelet's stats; then its kill records.
func (s *Scraper) record(now pcommon.Timestamp, p *containerstate.Pod, c *containerstate.Container, points []containerstate.Point, processOK bool) {
	rb := s.mb.NewResourceBuilder()
	rb.SetK8sNamespaceName(p.Namespace)
	rb.SetK8sPodName(p.Name)
	rb.SetK8sPodUID(string(p.UID))
	rb.SetK8sContainerName(c.Name)
	rb.SetK8sNodeName(p.Node)
	if id := runtimeID(c.ContainerID); id != "" {
		rb.SetContainerID(id)
	}
	setWorkload(rb, p.Workload)
	res := rb.Emit()
	for _, a := range s.labels {
		if v, ok := p.Labels[a.key]; ok {
			res.Attributes().PutStr(a.attribute, v)
		}
	}
	for _, a := range s.annotations {
		if v, ok := p.Annotations[a.key]; ok {
			res.Attributes().PutStr(a.attribute, v)
		}
	}

	s.flagPoints = s.flagPoints[:0]
	for _, pt := range points {
		flag := int64(0)
		if pt.OOMKilled {
			flag = 1
		}
		fp := metadata.FlagPoint{Unknown: pt.Unknown}
		if !pt.Since.IsZero() {
			fp.Start = pcommon.NewTimestampFromTime(pt.Since)
		}
		s.flagPoints = append(s.flagPoints, fp)
		s.mb.RecordK8sContainerOomKilledDataPoint(pcommon.NewTimestampFromTime(pt.Time), flag, pt.Instance)
	}
	s.mb.RecordK8sContainerRestartCountDataPoint(now, int64(c.RestartCount))
	if c.HasLast {
		s.mb.RecordK8sContainerLastTerminatedExitCodeDataPoint(now, int64(c.Last.ExitCode), c.Last.Reason)
	}
	if c.MemoryLimit > 0 {
		s.mb.RecordK8sContainerMemoryLimitDataPoint(now, c.MemoryLimit)
	}
	if c.MemoryRequest > 0 {
		s.mb.RecordK8sContainerMemoryRequestDataPoint(now, c.MemoryRequest)
	}
	logged := false
	if processOK {
		logged = s.recordProcessKills(now, p, c)
	}
	opts := []metadata.ResourceMetricsOption{metadata.WithResource(res), metadata.WithFlagPoints(s.flagPoints), metadata.WithDeltaStart(s.lastScrape)}
	if st := s.stats[statsKey{string(p.UID), c.Name}]; st != nil {
		s.recordStats(st, c.MemoryLimit)
		if !st.StartTime.IsZero() {
			// CPU time and page faults restart from zero with each container instance.
			opts = append(opts, metadata.WithInstanceStartTime(pcommon.NewTimestampFromTime(st.StartTime.Time)))
		}
	}
	s.mb.EmitForResource(opts...)
	if kills := c.Kills(); len(kills) > 0 && s.logs != nil {
		s.recordKills(p, c, kills)
		logged = true
	}
	if logged {
		s.lb.EmitForResource(metadata.WithLogsResource(res), metadata.WithEventSeverity(now))
	}
}

func (s *Scraper) recordStats(st *stats.ContainerStats, memoryLimit int64) {
	if cpu := st.CPU; cpu != nil {
		ts := pcommon.NewTimestampFromTime(cpu.Time.Time)
		if cpu.UsageCoreNanoSeconds != nil {
			s.mb.RecordContainerCPUTimeDataPoint(ts, float64(*cpu.UsageCoreNanoSeconds)/1e9)
		}
		if cpu.UsageNanoCores != nil {
			s.mb.RecordContainerCPUUsageDataPoint(ts, float64(*cpu.UsageNanoCores)/1e9)
		}
	}
	mem := st.Memory
	if mem == nil {
		return
	}
	ts := pcommon.NewTimestampFromTime(mem.Time.Time)
	if mem.WorkingSetBytes != nil {
		ws := *mem.WorkingSetBytes
		s.mb.RecordContainerMemoryWorkingSetDataPoint(ts, int64(ws))
		if memoryLimit > 0 {
			s.mb.RecordK8sContainerMemoryLimitUtilizationDataPoint(ts, float64(ws)/float64(memoryLimit))
		}
	}
	if mem.UsageBytes != nil {
		s.mb.RecordContainerMemoryUsageDataPoint(ts, int64(*mem.UsageBytes))
	}
	if mem.RSSBytes != nil {
		s.mb.RecordContainerMemoryRssDataPoint(ts, int64(*mem.RSSBytes))
	}
	if mem.PageFaults != nil {
		// PageFaults counts major and minor faults together.
		major := uint64(0)
		if mem.MajorPageFaults != nil {
			major = min(*mem.MajorPageFaults, *mem.PageFaults)
			s.mb.RecordContainerMemoryPagingFaultsDataPoint(ts, int64(major), metadata.AttributeSystemPagingFaultTypeMajor)
		}
		s.mb.RecordContainerMemoryPagingFaultsDataPoint(ts, int64(*mem.PageFaults-major), metadata.AttributeSystemPagingFaultTypeMinor)
	}
}

// setWorkload sets the workload names that are known.
func setWorkload(rb *metadata.ResourceBuilder, w workload.Names) {
	for _, a := range [...]struct {
		name string
		set  func(string)
	}{
		{w.ReplicaSet, rb.SetK8sReplicasetName},
		{w.Deployment, rb.SetK8sDeploymentName},
		{w.StatefulSet, rb.SetK8sStatefulsetName},
		{w.DaemonSet, rb.SetK8sDaemonsetName},
		{w.Job, rb.SetK8sJobName},
		{w.CronJob, rb.SetK8sCronjobName},
	} {
		if a.name != "" {
			a.set(a.name)
		}
	}
}

// runtimeID strips the runtime scheme of a container ID (containerd://<id>).
func runtimeID(id string) string {
	if i := strings.Index(id, "://"); i >= 0 {
		return id[i+3:]
	}
	return id
}
