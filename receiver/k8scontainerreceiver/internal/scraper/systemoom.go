// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
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

// recordSystemOOMs records each node's system OOM kills since the previous scrape: a delta
// point, 0 included, and a record per kill. With storage, the event counts they report are
// recorded before the scrape is handed on, so a restart reports none of them again.
func (s *Scraper) recordSystemOOMs(ctx context.Context, now pcommon.Timestamp) {
	saved, changed := s.systemOOMs.Drain(func(node string, kills []systemoom.Kill) {
		rb := s.mb.NewResourceBuilder()
		rb.SetK8sNodeName(node)
		res := rb.Emit()
		s.mb.RecordK8sNodeSystemOomKilledDataPoint(now, int64(len(kills)))
		s.mb.EmitForResource(metadata.WithResource(res), metadata.WithDeltaStart(s.lastScrape))
		if len(kills) == 0 || s.logs == nil {
			return
		}
		for _, k := range kills {
			s.lb.RecordK8sNodeSystemOomKillEvent(ctx, pcommon.NewTimestampFromTime(k.At), k.Victim, k.PID)
		}
		s.lb.EmitForResource(metadata.WithLogsResource(res), metadata.WithEventSeverity(now))
	})
	if !changed || s.storage == nil {
		return
	}
	if err := s.storage.Set(ctx, systemOOMCountsKey, saved); err != nil {
		s.logger.Warn("Recording the system OOM event counts failed; kills while the receiver is down may be missed", zap.Error(err))
	}
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
