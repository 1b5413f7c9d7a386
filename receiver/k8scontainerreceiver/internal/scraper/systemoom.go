// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/systemoom"
)

// System OOM kills: the receiver watches only the kubelet's SystemOOM events, of its own node
// when it has one; internal/systemoom counts the growth of each.

// systemOOMNamespace holds events about cluster-scoped objects such as nodes.
const systemOOMNamespace = metav1.NamespaceDefault

// systemOOMCountsKey holds, in the storage client, the count of each SystemOOM event as last
// reported.
const systemOOMCountsKey = "system_oom_counts"

// startSystemOOMWatch starts the informer of the SystemOOM events.
func (s *Scraper) startSystemOOMWatch() error {
	set := fields.Set{"involvedObject.kind": "Node", "reason": systemoom.Reason}
	if s.cfg.Node != "" {
		set["involvedObject.name"] = s.cfg.Node
	}
	selector := fields.SelectorFromSet(set).String()
	s.eventFactory = informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithNamespace(systemOOMNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = selector }))
	inf := s.eventFactory.Core().V1().Events().Informer()
	_, err := inf.AddEventHandler(s.deps.handler("events", cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, isInInitialList bool) {
			if ev, ok := obj.(*corev1.Event); ok {
				s.systemOOMs.Observe(ev, !isInInitialList)
			}
		},
		UpdateFunc: func(_, obj any) {
			if ev, ok := obj.(*corev1.Event); ok {
				s.systemOOMs.Observe(ev, true)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if ev, ok := obj.(*corev1.Event); ok {
				s.systemOOMs.Forget(ev)
			}
		},
	}))
	if err != nil {
		return err
	}
	s.eventFactory.Start(s.stopCh)
	return nil
}

// nodeKills are one node's system OOM kills since the last scrape that handed them on.
type nodeKills struct {
	node  string
	kills []systemoom.Kill
}

// drainSystemOOMs hands record the system OOM event counts to save (nil if unchanged) and, once
// recorded, takes each node's system OOM kills since the last scrape that handed them on, for
// recordSystemOOMs.
func (s *Scraper) drainSystemOOMs(record func(saved []byte) error) error {
	s.systemKills = s.systemKills[:0]
	return s.systemOOMs.DrainRecorded(record, func(node string, kills []systemoom.Kill) {
		s.systemKills = append(s.systemKills, nodeKills{node, slices.Clone(kills)})
	})
}

// recordSystemOOMs records the kills drainSystemOOMs took: per node a delta point, 0 included,
// and a record per kill.
func (s *Scraper) recordSystemOOMs(ctx context.Context, now pcommon.Timestamp) {
	for _, n := range s.systemKills {
		rb := s.mb.NewResourceBuilder()
		s.setCluster(rb)
		rb.SetK8sNodeName(n.node)
		res := rb.Emit()
		s.mb.RecordK8sNodeSystemOomKilledDataPoint(now, int64(len(n.kills)))
		s.mb.EmitForResource(metadata.WithResource(res), metadata.WithDeltaStart(s.lastScrape))
		if len(n.kills) == 0 || s.logs == nil {
			continue
		}
		for _, k := range n.kills {
			var opts []metadata.EventAttributeOption
			if k.Victim != "" {
				opts = append(opts, metadata.WithProcessExecutableNameEventAttribute(k.Victim))
			}
			if k.PID != 0 {
				opts = append(opts, metadata.WithProcessPidEventAttribute(k.PID))
			}
			s.lb.RecordK8sNodeSystemOomKillEvent(ctx, pcommon.NewTimestampFromTime(k.At), opts...)
		}
		s.lb.EmitForResource(metadata.WithLogsResource(res), metadata.WithEventSeverity(now))
	}
	s.systemKills = s.systemKills[:0]
}

func (s *Scraper) restoreSystemOOMCounts(ctx context.Context, horizon time.Time) {
	saved, err := s.storage.Get(ctx, systemOOMCountsKey)
	if err != nil {
		saved = nil
	}
	if err := s.systemOOMs.Restore(saved, horizon); err != nil {
		s.logger.Warn("Discarding a damaged record of the system OOM event counts", zap.Error(err))
	}
}
