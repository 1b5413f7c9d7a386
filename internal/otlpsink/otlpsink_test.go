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
