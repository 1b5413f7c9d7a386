// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/oomwatch/oomwatch/internal/testing/backend"
)

// logsServer is VictoriaLogs (built by make cluster-bin), a logs backend the gateway sends the
// kill records to over OTLP/HTTP, queried as its users query it: LogsQL over HTTP.
type logsServer struct {
	url string
}

// otlpLogs is the OTLP/HTTP logs endpoint of the server.
func (l *logsServer) otlpLogs() string { return l.url + "/insert/opentelemetry/v1/logs" }

func startVictoriaLogs(t *testing.T) *logsServer {
	t.Helper()
	s := need(t)
	bin := s.cluster.Bin("victoria-logs")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("VictoriaLogs is not built (make cluster-bin): %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	cmd := exec.Command(bin, "-httpListenAddr="+addr, "-storageDataPath="+filepath.Join(dir, "data"), "-loggerLevel=WARN")
	l := &logsServer{url: "http://" + addr}
	backend.Start(t, "victoria-logs", cmd, dir, l.url+"/health")
	return l
}

// query runs a LogsQL query over everything stored and returns the entries, each a map of its
// fields.
func (l *logsServer) query(q string) ([]map[string]string, error) {
	body, status, err := backend.Get(l.url + "/select/logsql/query?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d: %s", q, status, body)
	}
	// One JSON object per line.
	var out []map[string]string
	for line := range bytes.Lines(body) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e map[string]string
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		out = append(out, e)
	}
	return out, nil
}
