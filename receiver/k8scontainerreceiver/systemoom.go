// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
)

// System OOM kills: when the whole node runs out of memory, the kubelet records a Warning event
// with reason SystemOOM on its Node object, one per kill; identical events are aggregated into
// one whose count grows. The receiver watches only these events, of its own node when it has
// one, and counts the growth of each.

// systemOOMReason is the reason of the kubelet's event for a system OOM kill.
const systemOOMReason = "SystemOOM"

// systemOOMNamespace holds events about cluster-scoped objects such as nodes.
const systemOOMNamespace = metav1.NamespaceDefault

// systemOOMCountsKey holds, in the storage client, the count of each SystemOOM event as last
// reported.
const systemOOMCountsKey = "system_oom_counts"

// systemKill is one system OOM kill.
type systemKill struct {
	at     time.Time
	victim string
	pid    int64
}

// systemOOMs is what the receiver knows of the SystemOOM events; safe for concurrent use.
type systemOOMs struct {
	mu sync.Mutex
	// horizon is when an earlier run last looked; zero if unknown.
	horizon time.Time
	// counts are the count of each event as reported; restored from storage after a restart.
	counts  map[types.UID]int32
	changed bool
	// pending are the kills since the last scrape, by node; node is the own node, always shown.
	pending map[string][]systemKill
	node    string
}

func newSystemOOMs(node string) *systemOOMs {
	s := &systemOOMs{counts: map[types.UID]int32{}, pending: map[string][]systemKill{}, node: node}
	if node != "" {
		s.pending[node] = nil
	}
	return s
}

// observe records what an event shows. news tells that the event was created while the receiver
// watched: all of its count is new.
func (o *systemOOMs) observe(ev *corev1.Event, news bool) {
	if ev.Reason != systemOOMReason || ev.InvolvedObject.Kind != "Node" {
		return
	}
	count := eventCount(ev)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.node != "" && ev.InvolvedObject.Name != o.node {
		return
	}
	prev, known := o.counts[ev.UID]
	switch {
	case known:
	case news:
	case !o.horizon.IsZero() && !firstTime(ev).Before(o.horizon.Truncate(time.Second)):
		// Created after an earlier run last looked (to the second: event times have no finer
		// precision), and not among the events it reported: no receiver reported any of it.
	default:
		// Already there at first sight: history, the baseline.
		prev = count
	}
	o.counts[ev.UID] = max(prev, count)
	if count > prev {
		o.changed = true
		victim, pid := parseVictim(ev.Message)
		at := lastTime(ev)
		for range count - prev {
			o.pending[ev.InvolvedObject.Name] = append(o.pending[ev.InvolvedObject.Name], systemKill{at: at, victim: victim, pid: pid})
		}
	} else if !known {
		o.changed = true
	}
}

func (o *systemOOMs) forget(ev *corev1.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.counts[ev.UID]; ok {
		delete(o.counts, ev.UID)
		o.changed = true
	}
}

// drain hands each node's kills since the last drain to emit, the own node's even when none.
// It returns the counts that what it handed out reports, if they changed since the last drain.
func (o *systemOOMs) drain(emit func(node string, kills []systemKill)) (map[types.UID]int32, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for node, kills := range o.pending {
		emit(node, kills)
		if node == o.node {
			o.pending[node] = kills[:0]
		} else {
			delete(o.pending, node)
		}
	}
	if !o.changed {
		return nil, false
	}
	o.changed = false
	return maps.Clone(o.counts), true
}

func (o *systemOOMs) restore(counts map[types.UID]int32, horizon time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	maps.Copy(o.counts, counts)
	o.horizon = horizon
}

func eventCount(ev *corev1.Event) int32 {
	n := ev.Count
	if ev.Series != nil {
		n = max(n, ev.Series.Count)
	}
	return max(n, 1)
}

func firstTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

func lastTime(ev *corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	}
	return firstTime(ev)
}

// parseVictim reads "System OOM encountered, victim process: <name>, pid: <pid>"; older kubelets
// write no victim.
func parseVictim(msg string) (name string, pid int64) {
	_, rest, ok := strings.Cut(msg, "victim process: ")
	if !ok {
		return "", 0
	}
	name, pidText, ok := strings.Cut(rest, ", pid: ")
	if !ok {
		return rest, 0
	}
	pid, _ = strconv.ParseInt(strings.TrimSpace(pidText), 10, 64)
	return name, pid
}

// startSystemOOMWatch starts the informer of the SystemOOM events.
func (s *containerScraper) startSystemOOMWatch() error {
	set := fields.Set{"involvedObject.kind": "Node", "reason": systemOOMReason}
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
				s.systemOOMs.observe(ev, !isInInitialList)
			}
		},
		UpdateFunc: func(_, obj any) {
			if ev, ok := obj.(*corev1.Event); ok {
				s.systemOOMs.observe(ev, true)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if ev, ok := obj.(*corev1.Event); ok {
				s.systemOOMs.forget(ev)
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
func (s *containerScraper) recordSystemOOMs(ctx context.Context, now pcommon.Timestamp) {
	counts, changed := s.systemOOMs.drain(func(node string, kills []systemKill) {
		rb := s.mb.NewResourceBuilder()
		rb.SetK8sNodeName(node)
		res := rb.Emit()
		s.mb.RecordK8sNodeSystemOomKilledDataPoint(now, int64(len(kills)))
		s.mb.EmitForResource(metadata.WithResource(res), metadata.WithDeltaStart(s.lastScrape))
		if len(kills) == 0 || s.logs == nil {
			return
		}
		for _, k := range kills {
			s.lb.RecordK8sNodeSystemOomKillEvent(ctx, pcommon.NewTimestampFromTime(k.at), k.victim, k.pid)
		}
		s.lb.EmitForResource(metadata.WithLogsResource(res), metadata.WithEventSeverity(now))
	})
	if !changed || s.storage == nil {
		return
	}
	b, err := json.Marshal(counts)
	if err == nil {
		err = s.storage.Set(ctx, systemOOMCountsKey, b)
	}
	if err != nil {
		s.logger.Warn("Recording the system OOM event counts failed; kills while the receiver is down may be missed", zap.Error(err))
	}
}

func (s *containerScraper) restoreSystemOOMCounts(ctx context.Context, horizon time.Time) {
	counts := map[types.UID]int32{}
	if b, err := s.storage.Get(ctx, systemOOMCountsKey); err == nil && b != nil {
		if err := json.Unmarshal(b, &counts); err != nil {
			s.logger.Warn("Discarding a damaged record of the system OOM event counts", zap.Error(err))
			counts = map[types.UID]int32{}
		}
	}
	s.systemOOMs.restore(counts, horizon)
}
