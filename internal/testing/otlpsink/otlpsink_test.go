// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package otlpsink

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestReceivesWhatAnOTLPExporterSends sends through the collector's own OTLP exporter, stops
// the sink and starts it again: points from before and after are all there.
func TestReceivesWhatAnOTLPExporterSends(t *testing.T) {
	ctx := context.Background()
	s := New(freeAddr(t))
	require.NoError(t, s.Start(ctx))
	defer func() { require.NoError(t, s.Stop(ctx)) }()

	f := otlpexporter.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpexporter.Config)
	cfg.ClientConfig.Endpoint = s.Endpoint()
	cfg.ClientConfig.TLS.Insecure = true
	exp, err := f.CreateMetrics(ctx, exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(ctx, componenttest.NewNopHost()))
	defer func() { require.NoError(t, exp.Shutdown(ctx)) }()

	send := func(v int64, ts time.Time) {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("k8s.pod.uid", "u1")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("k8s.container.oom_kills")
		dp := m.SetEmptySum().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		dp.SetIntValue(v)
		require.NoError(t, exp.ConsumeMetrics(ctx, md))
	}
	now := time.Now()
	send(1, now)
	require.Eventually(t, func() bool { return len(s.Points("k8s.container.oom_kills", nil)) == 1 }, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, s.Stop(ctx))
	require.NoError(t, s.Start(ctx))
	send(2, now.Add(time.Second))
	require.Eventually(t, func() bool { return len(s.Points("k8s.container.oom_kills", nil)) == 2 }, 10*time.Second, 20*time.Millisecond)

	latest, ok := s.Latest("k8s.container.oom_kills", map[string]string{"k8s.pod.uid": "u1"})
	require.True(t, ok)
	assert.Equal(t, 2.0, latest.Value)
	assert.Empty(t, s.Points("k8s.container.oom_kills", map[string]string{"k8s.pod.uid": "other"}))
}

// TestReceivesLogsBesideMetrics sends log records and metrics through the collector's own OTLP
// exporters to one sink, stops it and starts it again: the records keep their event name,
// resource, attributes and timestamps, and are found by event name and by attributes of the
// record or of its resource.
func TestReceivesLogsBesideMetrics(t *testing.T) {
	ctx := context.Background()
	s := New(freeAddr(t))
	require.NoError(t, s.Start(ctx))
	defer func() { require.NoError(t, s.Stop(ctx)) }()

	f := otlpexporter.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpexporter.Config)
	cfg.ClientConfig.Endpoint = s.Endpoint()
	cfg.ClientConfig.TLS.Insecure = true
	logsExp, err := f.CreateLogs(ctx, exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, logsExp.Start(ctx, componenttest.NewNopHost()))
	defer func() { require.NoError(t, logsExp.Shutdown(ctx)) }()
	metricsExp, err := f.CreateMetrics(ctx, exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, metricsExp.Start(ctx, componenttest.NewNopHost()))
	defer func() { require.NoError(t, metricsExp.Shutdown(ctx)) }()

	at := time.Unix(1_700_000_000, 123_000_000).UTC()
	observed := at.Add(2 * time.Second)
	sendLogs := func(pod string, events ...string) {
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("k8s.pod.uid", pod)
		for i, name := range events {
			lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
			lr.SetEventName(name)
			lr.SetTimestamp(pcommon.NewTimestampFromTime(at))
			lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(observed))
			lr.SetSeverityNumber(plog.SeverityNumberWarn)
			lr.SetSeverityText("WARN")
			lr.Body().SetStr("body")
			lr.Attributes().PutInt("k8s.container.restart_count", int64(i))
			lr.Attributes().PutStr("container.id", "c"+string(rune('0'+i)))
		}
		require.NoError(t, logsExp.ConsumeLogs(ctx, ld))
	}
	sendLogs("u1", "k8s.container.oom_kill", "k8s.container.oom_kill", "k8s.container.process.oom_kill")
	require.Eventually(t, func() bool { return len(s.Records("", nil)) == 3 }, 10*time.Second, 20*time.Millisecond)

	// Metrics still arrive at the same endpoint.
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("k8s.container.oom_kills")
	m.SetEmptySum().DataPoints().AppendEmpty().SetIntValue(1)
	require.NoError(t, metricsExp.ConsumeMetrics(ctx, md))
	require.Eventually(t, func() bool { return len(s.Points("k8s.container.oom_kills", nil)) == 1 }, 10*time.Second, 20*time.Millisecond)

	kills := s.Records("k8s.container.oom_kill", nil)
	require.Len(t, kills, 2)
	r := kills[1]
	assert.Equal(t, "k8s.container.oom_kill", r.EventName)
	assert.Equal(t, map[string]string{"k8s.pod.uid": "u1"}, r.Resource)
	assert.Equal(t, map[string]string{"k8s.container.restart_count": "1", "container.id": "c1"}, r.Attrs)
	assert.Equal(t, at, r.Time.UTC())
	assert.Equal(t, observed, r.Observed.UTC())
	assert.Equal(t, "WARN", r.Severity)
	assert.Equal(t, int32(plog.SeverityNumberWarn), r.SeverityNumber)
	assert.Equal(t, "body", r.Body)
	assert.False(t, r.Received.IsZero())

	// A match is on the record's attributes or on its resource's.
	assert.Len(t, s.Records("k8s.container.oom_kill", map[string]string{"k8s.pod.uid": "u1", "k8s.container.restart_count": "0"}), 1)
	assert.Len(t, s.Records("", map[string]string{"k8s.pod.uid": "u1"}), 3)
	assert.Empty(t, s.Records("k8s.container.oom_kill", map[string]string{"k8s.pod.uid": "u2"}))
	assert.Empty(t, s.Records("k8s.container.oom_kill", map[string]string{"container.id": "c2"}))
	assert.Len(t, s.Records("k8s.container.process.oom_kill", map[string]string{"container.id": "c2"}), 1)

	// What arrived before a stop is kept; what comes after is added.
	require.NoError(t, s.Stop(ctx))
	require.NoError(t, s.Start(ctx))
	sendLogs("u2", "k8s.node.system_oom_kill")
	require.Eventually(t, func() bool { return len(s.Records("", nil)) == 4 }, 10*time.Second, 20*time.Millisecond)
	assert.Len(t, s.Records("k8s.node.system_oom_kill", map[string]string{"k8s.pod.uid": "u2"}), 1)
	assert.Len(t, s.Records("k8s.container.oom_kill", nil), 2)
}
