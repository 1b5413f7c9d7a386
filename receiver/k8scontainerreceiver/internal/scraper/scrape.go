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
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workload"
)

// The scrape: every tracked container with the points of its OOM-kill flag since the last
// scrape, its restart count, memory resources and the kubelet's stats, top to bottom, from the
// tracker's drain to the resource the metrics builder emits.

// Scrape reports every tracked container. A kubelet failure costs the stats of this scrape
// only; it is counted and logged when it changes, not returned, since the scraper controller
// would log a returned error on every scrape. So is a failure to record what the scrape reports.
func (s *Scraper) Scrape(ctx context.Context) (pmetric.Metrics, error) {
	now := s.deps.Now()
	clear(s.stats)
	processEnabled := s.cfg.Metrics.K8sContainerProcessOomKilled.Enabled
	processOK := false
	// A kubelet that did not answer for the Summary is not asked again in the same scrape.
	kubeletOK := s.kubelet != nil && s.collectStats(ctx)
	if processEnabled && (kubeletOK || s.cgroups != nil) {
		processOK = s.collectProcessKills(ctx)
	}
	s.readLimits()
	s.readKernelLog()
	nowTS := pcommon.NewTimestampFromTime(now)
	if s.lastScrape == 0 {
		s.lastScrape = s.started
	}
	containers := 0
	// Whatever this scrape hands on is recorded first, with nothing observed in between: a
	// restart never reports a kill twice, at the cost of taking as history what a scrape lost
	// by a crash after its record had reported. A scrape whose record fails hands on no kill:
	// they wait for the next one, and only the containers' stats go out.
	record := func(h containerstate.Horizon, pending containerstate.Pending) error {
		if processEnabled {
			s.absorbInnerKills(pending)
		}
		save := func(systemOOMCounts []byte) error {
			return s.saveReported(ctx, h, s.processCounters(), systemOOMCounts)
		}
		if s.systemOOMs == nil {
			return save(nil)
		}
		return s.drainSystemOOMs(save)
	}
	err := s.tracker.DrainRecorded(now, record, func(p *containerstate.Pod, c *containerstate.Container, points []containerstate.Point) {
		containers++
		s.record(nowTS, p, c, points, processOK)
	})
	if err == nil {
		s.recordSystemOOMs(ctx, nowTS)
		s.processCountersChanged = false
		if processOK {
			s.processKills.Handed()
		}
		s.lastScrape = nowTS
	} else {
		s.tracker.Each(func(p *containerstate.Pod, c *containerstate.Container) {
			containers++
			s.recordStatsOnly(nowTS, p, c)
		})
	}
	s.telemetry.K8sContainerContainersTracked.Record(ctx, int64(containers))
	s.rememberWorkingSets()
	s.forgetSuggestions()
	s.emitLogs(ctx)
	return s.mb.Emit(), nil
}

// setCluster sets k8s.cluster.name, when the configuration names the cluster.
func (s *Scraper) setCluster(rb *metadata.ResourceBuilder) {
	if s.cfg.ClusterName != "" {
		rb.SetK8sClusterName(s.cfg.ClusterName)
	}
}

// resource builds a container's resource attributes.
func (s *Scraper) resource(p *containerstate.Pod, c *containerstate.Container) pcommon.Resource {
	rb := s.mb.NewResourceBuilder()
	s.setCluster(rb)
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
	return res
}

// record emits one container's resource: its attributes, the points of its OOM-kill flag, the
// pod status' metrics, the process kills and the kubelet's stats; then its kill records.
func (s *Scraper) record(now pcommon.Timestamp, p *containerstate.Pod, c *containerstate.Container, points []containerstate.Point, processOK bool) {
	res := s.resource(p, c)
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
	s.recordStatus(now, c)
	if hits, ok := s.limitHitCounts[runtimeID(c.ContainerID)]; ok {
		s.mb.RecordK8sContainerMemoryLimitHitsDataPoint(now, int64(hits))
	}
	if stall, ok := s.stallTimes[runtimeID(c.ContainerID)]; ok {
		// The kernel's totals are microseconds.
		s.mb.RecordContainerMemoryPressureStallTimeDataPoint(now, float64(stall.some)/1e6, metadata.AttributePressureTypeSome)
		s.mb.RecordContainerMemoryPressureStallTimeDataPoint(now, float64(stall.full)/1e6, metadata.AttributePressureTypeFull)
	}
	if hits, ok := s.limits.podHits[string(p.RuntimeUID)]; ok {
		s.mb.RecordK8sPodMemoryLimitHitsDataPoint(now, int64(hits.Reached))
	}
	logged := false
	if processOK {
		logged = s.recordProcessKills(now, p, c)
	}
	if kills := c.Kills(); len(kills) > 0 && (s.logs != nil || s.podEvents != nil || s.cfg.Metrics.K8sContainerMemoryLimitSuggested.Enabled) {
		s.recordKills(p, c, kills)
		logged = logged || s.logs != nil
	}
	s.recordSuggestion(now, statsKey{string(p.RuntimeUID), c.Name})
	opts := append(s.recordKubeletStats(p, c), metadata.WithResource(res), metadata.WithFlagPoints(s.flagPoints), metadata.WithDeltaStart(s.lastScrape))
	s.mb.EmitForResource(opts...)
	if logged {
		s.lb.EmitForResource(metadata.WithLogsResource(res), metadata.WithEventSeverity(now))
	}
}

// recordStatsOnly emits one container's resource without kills: its pod status' metrics but
// the flag, and the kubelet's stats.
func (s *Scraper) recordStatsOnly(now pcommon.Timestamp, p *containerstate.Pod, c *containerstate.Container) {
	res := s.resource(p, c)
	s.recordStatus(now, c)
	s.mb.EmitForResource(append(s.recordKubeletStats(p, c), metadata.WithResource(res))...)
}

// recordStatus records the pod status' metrics of a container but its OOM-kill flag.
func (s *Scraper) recordStatus(now pcommon.Timestamp, c *containerstate.Container) {
	s.mb.RecordK8sContainerRestartCountDataPoint(now, int64(c.RestartCount))
	if c.HasLast {
		s.mb.RecordK8sContainerLastTerminatedExitCodeDataPoint(now, int64(c.Last.ExitCode), c.Last.Reason)
	}
	if c.MemoryLimit > 0 {
		s.mb.RecordK8sContainerMemoryLimitCurrentDataPoint(now, c.MemoryLimit)
	}
	if c.MemoryRequest > 0 {
		s.mb.RecordK8sContainerMemoryRequestCurrentDataPoint(now, c.MemoryRequest)
	}
}

// recordKubeletStats records a container's stats from the Summary, found under the UID the
// kubelet knows its pod by, and returns the option that starts them.
func (s *Scraper) recordKubeletStats(p *containerstate.Pod, c *containerstate.Container) []metadata.ResourceMetricsOption {
	st := s.stats[statsKey{string(p.RuntimeUID), c.Name}]
	if st == nil {
		return nil
	}
	s.recordStats(st, c.MemoryLimit)
	if st.StartTime.IsZero() {
		return nil
	}
	// CPU time and page faults restart from zero with each container instance.
	return []metadata.ResourceMetricsOption{metadata.WithInstanceStartTime(pcommon.NewTimestampFromTime(st.StartTime.Time))}
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
