// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

// The receiver as a collector runs it: the scraper controller drives the scraper, and one
// receiver serves the metrics and the logs pipelines that name it.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

func TestReceiverLifecycleThroughTheController(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	cfg := h.Config
	cfg.CollectionInterval = 20 * time.Millisecond
	sink := new(consumertest.MetricsSink)
	r, err := newReceiver(receivertest.NewNopSettings(metadata.Type), cfg, sink, h.Deps())
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background(), componenttest.NewNopHost()))
	h.WaitWatchers(1)
	h.Watcher().Add(podtest.NewPod("hog", "u1", podtest.NewLife("hog").Running(0)))
	require.Eventually(t, func() bool { return sink.DataPointCount() > 0 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, r.Shutdown(context.Background()))
}

// The metrics and logs pipelines that name one k8s_container share one receiver: one watch,
// one scrape, each kill once in each signal. Start and Shutdown may come from both, in any order.
func TestMetricsAndLogsShareOneReceiver(t *testing.T) {
	h := scrapertest.NewWith(t, nil)
	cfg := h.Config
	cfg.CollectionInterval = 20 * time.Millisecond
	set := receivertest.NewNopSettings(metadata.Type)
	metricsSink, logsSink := new(consumertest.MetricsSink), new(consumertest.LogsSink)
	mr, err := newReceiver(set, cfg, metricsSink, h.Deps())
	require.NoError(t, err)
	lr, err := newLogsReceiver(set, cfg, logsSink, h.Deps())
	require.NoError(t, err)
	require.Same(t, mr.(*sharedReceiver), lr.(*sharedReceiver))
	require.NoError(t, lr.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, mr.Start(context.Background(), componenttest.NewNopHost()))
	h.WaitWatchers(1)
	require.Equal(t, 1, h.Watchers(), "one pod watch")

	hog := podtest.NewLife("hog", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Watcher().Add(pod)
	require.Eventually(t, func() bool { return metricsSink.DataPointCount() > 0 }, 5*time.Second, 5*time.Millisecond)
	h.Watcher().Modify(podtest.WithStatus(pod, hog.Terminated(0)))
	require.Eventually(t, func() bool { return logsSink.LogRecordCount() > 0 }, 5*time.Second, 5*time.Millisecond)
	// Three more scrapes, and the kill is not repeated. A scrape hands its records on before
	// its metrics, and the scrape that sent the record may not have sent its metrics yet:
	// four more metrics batches hold three whole scrapes after the record.
	seen := len(metricsSink.AllMetrics())
	require.Eventually(t, func() bool { return len(metricsSink.AllMetrics()) >= seen+4 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, logsSink.LogRecordCount())

	require.NoError(t, mr.Shutdown(context.Background()))
	require.NoError(t, lr.Shutdown(context.Background()))
	// Shut down, the configuration gets a new receiver.
	again, err := newLogsReceiver(set, cfg, logsSink, h.Deps())
	require.NoError(t, err)
	assert.NotSame(t, lr.(*sharedReceiver), again.(*sharedReceiver))
	require.NoError(t, again.Shutdown(context.Background()))
}
