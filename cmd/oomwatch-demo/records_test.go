// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// killLogs is one resource of a Deployment's container with records of the given events, the
// n-th at second n.
func killLogs(container string, records ...func(plog.LogRecord)) plog.Logs {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	attrs := rl.Resource().Attributes()
	attrs.PutStr("k8s.namespace.name", "demo-payments")
	attrs.PutStr("k8s.deployment.name", "ledger")
	attrs.PutStr("k8s.pod.name", "ledger-955466d86-mtz5h")
	attrs.PutStr("k8s.container.name", container)
	sl := rl.ScopeLogs().AppendEmpty()
	for i, fill := range records {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(int64(1_800_000_000+i), 0)))
		fill(lr)
	}
	return logs
}

func containerKill(scope, class string, pid int64) func(plog.LogRecord) {
	return func(lr plog.LogRecord) {
		lr.SetEventName(eventContainerKill)
		lr.Attributes().PutBool("k8s.oom.main_process", true)
		lr.Attributes().PutStr("k8s.oom.scope", scope)
		lr.Attributes().PutStr("k8s.oom.growth_class", class)
		lr.Attributes().PutStr("process.executable.name", "workload")
		lr.Attributes().PutInt("process.pid", pid)
	}
}

func post(t *testing.T, h http.Handler, path, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	return postEncoded(t, h, path, contentType, "", body)
}

func postEncoded(t *testing.T, h http.Handler, path, contentType, encoding string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	h.ServeHTTP(rec, req)
	return rec
}

func TestKillRecordsKeepTheLatestKillOfEachContainer(t *testing.T) {
	t.Parallel()
	k := newKillRecords()
	logs := killLogs("app",
		containerKill("pod", "spike", 100),
		containerKill("container", "slow_growth", 200),
		func(lr plog.LogRecord) { lr.SetEventName("k8s.node.system_oom_kill") },
	)
	body, err := plogotlp.NewExportRequestFromLogs(logs).MarshalProto()
	require.NoError(t, err)
	// Compressed, as the collector's OTLP/HTTP exporter sends by default.
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, err = zw.Write(body)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	rec := postEncoded(t, k, "/v1/logs", "application/x-protobuf", "gzip", zipped.Bytes())
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	resp := plogotlp.NewExportResponse()
	require.NoError(t, resp.UnmarshalProto(rec.Body.Bytes()), "an OTLP response")

	got := k.explanations()
	require.Len(t, got, 1)
	e := got[containerKey{"demo-payments", "ledger", "app"}]
	assert.Equal(t, "own limit, slow growth, killed workload[200]", e.String())

	// An older record sent later does not replace a newer one; a process kill of a later
	// second does, in JSON too.
	older := killLogs("app", containerKill("node", "spike", 50))
	body, err = plogotlp.NewExportRequestFromLogs(older).MarshalProto()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, post(t, k, "/v1/logs", "application/x-protobuf", body).Code)
	assert.Equal(t, e, k.explanations()[containerKey{"demo-payments", "ledger", "app"}])

	later := killLogs("app", func(plog.LogRecord) {}, func(plog.LogRecord) {}, func(plog.LogRecord) {}, func(lr plog.LogRecord) {
		lr.SetEventName(eventProcessKill)
		lr.Attributes().PutBool("k8s.oom.main_process", false)
		lr.Attributes().PutStr("k8s.oom.scope", "container")
	})
	body, err = plogotlp.NewExportRequestFromLogs(later).MarshalJSON()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, post(t, k, "/v1/logs", "application/json", body).Code)
	assert.Equal(t, "own limit, not PID 1", k.explanations()[containerKey{"demo-payments", "ledger", "app"}].String())
}

func TestKillRecordsRefuseWhatIsNotOTLPLogs(t *testing.T) {
	t.Parallel()
	k := newKillRecords()
	assert.Equal(t, http.StatusNotFound, post(t, k, "/v1/metrics", "application/x-protobuf", nil).Code)
	assert.Equal(t, http.StatusBadRequest, post(t, k, "/v1/logs", "text/plain", []byte("hello")).Code)
	assert.Equal(t, http.StatusBadRequest, post(t, k, "/v1/logs", "application/x-protobuf", []byte{0xff, 0xff}).Code)
	assert.Equal(t, http.StatusBadRequest, postEncoded(t, k, "/v1/logs", "application/x-protobuf", "gzip", []byte("not gzip")).Code)
	assert.Equal(t, http.StatusUnsupportedMediaType, postEncoded(t, k, "/v1/logs", "application/x-protobuf", "br", nil).Code)
	assert.Empty(t, k.explanations())
}

func TestExplanationWithoutDetails(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "limit unknown", explanation{mainProcess: true}.String())
	assert.Equal(t, "node allocatable, steady at limit", explanation{mainProcess: true, scope: "node_allocatable", growthClass: "steady_at_limit"}.String())
	assert.Equal(t, "node out of memory, not PID 1", explanation{scope: "node"}.String())
}
