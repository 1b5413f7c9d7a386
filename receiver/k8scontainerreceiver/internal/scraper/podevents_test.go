// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// oomEvents are the OOMKill Events in the namespace of podtest's pods.
func oomEvents(t *testing.T, h *scrapertest.Harness) []corev1.Event {
	t.Helper()
	list, err := h.Client.CoreV1().Events(podtest.Namespace).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var out []corev1.Event
	for _, ev := range list.Items {
		if ev.Reason == "OOMKill" {
			out = append(out, ev)
		}
	}
	return out
}

// TestPodEventPerKill: with pod_events, each kill the receiver reports is one Warning Event on
// its pod, reported by oomwatch, with the explanation; without a logs pipeline too.
func TestPodEventPerKill(t *testing.T) {
	h := scrapertest.NewWith(t, func(cfg *scraper.Config) { cfg.PodEvents = true })
	h.Start()
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	h.At(11 * time.Second)
	h.Scrape()
	h.At(31 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	h.At(32 * time.Second)
	h.Scrape()
	h.At(40 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	h.Scrape()

	var events []corev1.Event
	require.Eventually(t, func() bool { events = oomEvents(t, h); return len(events) == 1 }, 5*time.Second, 10*time.Millisecond)
	ev := events[0]
	assert.Equal(t, corev1.EventTypeWarning, ev.Type)
	assert.Equal(t, "oomwatch", ev.ReportingController)
	assert.Equal(t, "oomwatch", ev.Source.Component)
	assert.Equal(t, corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: podtest.Namespace, Name: "hog", UID: "u1", FieldPath: "spec.containers{hog}"}, ev.InvolvedObject)
	assert.Equal(t, "Container hog OOM-killed (restart 0, exit code 137): which limit was reached is not known.", ev.Message)
	assert.Equal(t, podtest.T0.Add(30*time.Second), ev.FirstTimestamp.UTC())

	// The second kill: one more Event.
	h.At(61 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(1)))
	h.At(62 * time.Second)
	h.Scrape()
	require.Eventually(t, func() bool { return len(oomEvents(t, h)) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, h.Scraper.Shutdown(context.Background()))
	require.NoError(t, h.Scraper.Shutdown(context.Background()), "a second Shutdown")
}
