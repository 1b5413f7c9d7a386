// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/slimpod"
)

// The pod watch: a shared informer on the pods of the node (or of the cluster), and its event
// handlers, which diff every update at once so that no termination visible between two scrapes
// is lost. What they find waits in the tracker until the next scrape.

var _ cache.ResourceEventHandler = (*Scraper)(nil)

// startPodWatch starts the informer of the pods, slimmed by the transform to what the receiver
// uses.
func (s *Scraper) startPodWatch() error {
	var opts []informers.SharedInformerOption
	if s.cfg.Node != "" {
		selector := fields.OneTermEqualSelector("spec.nodeName", s.cfg.Node).String()
		opts = append(opts, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = selector }))
	}
	s.factory = informers.NewSharedInformerFactoryWithOptions(s.client, 0, opts...)
	inf := s.factory.Core().V1().Pods().Informer()
	if err := inf.SetTransform(slimpod.Transform(s.cfg.Extract.labelKeys(), s.cfg.Extract.annotationKeys())); err != nil {
		return err
	}
	reg, err := inf.AddEventHandler(s.deps.handler("pods", s))
	if err != nil {
		return err
	}
	s.podsListed = reg.HasSynced
	s.stopCh = make(chan struct{})
	s.factory.Start(s.stopCh)
	return nil
}

// OnAdd handles a pod the informer did not hold. One that is not in its initial list was
// created while the receiver watched (or while its watch was down): its terminations are news.
func (s *Scraper) OnAdd(obj any, isInInitialList bool) {
	if isInInitialList {
		s.onUpsert(obj)
		return
	}
	if pod, ok := obj.(*slimpod.Pod); ok {
		s.count(s.tracker.UpsertCreated(pod, s.deps.Now()))
	}
}

func (s *Scraper) onUpsert(obj any) {
	if pod, ok := obj.(*slimpod.Pod); ok {
		s.count(s.tracker.Upsert(pod, s.deps.Now()))
	}
}

// OnUpdate handles a changed pod. An update may also carry another pod under the same name:
// when the watch was down while a pod was deleted and re-created, the relist delivers the new
// pod as an update of the old one. The old one is then finished like a deleted pod.
func (s *Scraper) OnUpdate(oldObj, newObj any) {
	prev, okPrev := oldObj.(*slimpod.Pod)
	next, okNext := newObj.(*slimpod.Pod)
	if okPrev && okNext && prev.UID != next.UID {
		s.count(s.tracker.Delete(prev, s.deps.Now()))
		s.OnAdd(next, false)
		return
	}
	s.onUpsert(newObj)
}

// OnDelete handles a deleted pod, or the last state the informer knew of one whose deletion it
// missed.
func (s *Scraper) OnDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*slimpod.Pod); ok {
		s.count(s.tracker.Delete(pod, s.deps.Now()))
	}
}

func (s *Scraper) count(o containerstate.Observed) {
	ctx := context.Background()
	if o.Terminations > 0 {
		s.telemetry.K8sContainerTerminationsObserved.Add(ctx, int64(o.Terminations))
	}
	if o.OOMKills > 0 {
		s.telemetry.K8sContainerOomKillsObserved.Add(ctx, int64(o.OOMKills))
	}
	if o.HistoryOOMKills > 0 {
		s.telemetry.K8sContainerOomKillsHistory.Add(ctx, int64(o.HistoryOOMKills))
	}
	if o.Unseen > 0 {
		s.telemetry.K8sContainerTerminationsUnseen.Add(ctx, int64(o.Unseen))
	}
	if o.Dropped > 0 {
		s.telemetry.K8sContainerTerminationsDropped.Add(ctx, int64(o.Dropped))
	}
}
