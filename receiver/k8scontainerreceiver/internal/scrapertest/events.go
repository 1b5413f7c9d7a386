// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scrapertest

import (
	"sync"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
)

// Events on the fake API server: the kubelet's SystemOOM events, and the scraper's watch of them.

// SystemOOM is a kubelet's SystemOOM event about node, aggregated count times, first and last
// seen at those times after podtest.T0.
func SystemOOM(uid, node string, count int32, first, last time.Duration, victim string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "default", Name: node + "." + uid, UID: types.UID(uid)},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node)},
		Reason:         "SystemOOM",
		Type:           corev1.EventTypeWarning,
		Message:        "System OOM encountered, victim process: " + victim + ", pid: 4242",
		Source:         corev1.EventSource{Component: "kubelet", Host: node},
		Count:          count,
		FirstTimestamp: metav1.NewTime(podtest.T0.Add(first)),
		LastTimestamp:  metav1.NewTime(podtest.T0.Add(last)),
	}
}

// EventWatch is the scraper's watch of events, to deliver events to it.
type EventWatch struct {
	h        *Harness
	mu       sync.Mutex
	watchers []*watch.FakeWatcher
}

// WatchEvents captures the watches of events the scraper will open.
func (h *Harness) WatchEvents() *EventWatch {
	w := &EventWatch{h: h}
	h.Client.PrependWatchReactor("events", func(k8stesting.Action) (bool, watch.Interface, error) {
		fw := watch.NewFakeWithChanSize(64, false)
		w.mu.Lock()
		w.watchers = append(w.watchers, fw)
		w.mu.Unlock()
		return true, fw, nil
	})
	return w
}

// Send delivers ev on the latest watch of events and waits until the scraper handled it.
func (w *EventWatch) Send(kind watch.EventType, ev *corev1.Event) {
	t := w.h.T
	t.Helper()
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.watchers) > 0
	}, 5*time.Second, time.Millisecond, "watching events")
	handled := w.h.handled["events"]
	before := handled.Load()
	w.mu.Lock()
	fw := w.watchers[len(w.watchers)-1]
	w.mu.Unlock()
	fw.Action(kind, ev)
	require.Eventually(t, func() bool { return handled.Load() > before }, 5*time.Second, time.Millisecond, "event handled")
}
