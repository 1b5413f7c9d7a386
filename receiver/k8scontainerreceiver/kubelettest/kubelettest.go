// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package kubelettest serves a kubelet's Summary API (/stats/summary) and cAdvisor metrics
// (/metrics/cadvisor) over TLS from memory, for tests of anything that reads container stats:
// the answers, the status code, a garbage body, a slow answer and the bearer token it accepts
// are set per test.
package kubelettest

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// SummaryPath is the path the kubelet serves the Summary API on.
const SummaryPath = "/stats/summary"

// CadvisorPath is the path the kubelet serves its cAdvisor's Prometheus metrics on.
const CadvisorPath = "/metrics/cadvisor"

// Kubelet is a TLS server answering like a kubelet's Summary API.
type Kubelet struct {
	server *httptest.Server

	mu       sync.Mutex
	summary  []byte
	status   int
	garbage  []byte
	delay    time.Duration
	token    string
	requests int
	tokens   []string

	cadvisor         []byte
	cadvisorRequests int
}

// New starts a kubelet that answers with an empty Summary and accepts any caller; it stops
// when the test ends.
func New(t testing.TB) *Kubelet {
	t.Helper()
	k := &Kubelet{summary: []byte("{}"), status: http.StatusOK}
	k.server = httptest.NewTLSServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.server.Close)
	return k
}

// Endpoint is the kubelet's host:port.
func (k *Kubelet) Endpoint() string { return k.server.Listener.Addr().String() }

// URL is the kubelet's base URL.
func (k *Kubelet) URL() string { return k.server.URL }

// WriteCA writes the certificate that verifies the kubelet's serving certificate into dir and
// returns its path.
func (k *Kubelet) WriteCA(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "kubelet-ca.crt")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.server.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// SetSummary sets the Summary served, and a 200 answer.
func (k *Kubelet) SetSummary(s *stats.Summary) {
	body, err := json.Marshal(s)
	if err != nil {
		panic(err) // the Summary types always marshal
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.summary, k.status, k.garbage = body, http.StatusOK, nil
}

// SetStatus makes the kubelet answer with code and a short text body.
func (k *Kubelet) SetStatus(code int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status, k.garbage = code, nil
}

// SetGarbage makes the kubelet answer 200 with body, which is not a Summary.
func (k *Kubelet) SetGarbage(body []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status, k.garbage = http.StatusOK, body
}

// SetDelay makes the kubelet wait d (or until the caller gives up) before it answers.
func (k *Kubelet) SetDelay(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.delay = d
}

// RequireToken makes the kubelet answer 401 unless the caller presents Bearer token; an
// empty token accepts any caller.
func (k *Kubelet) RequireToken(token string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.token = token
}

// SetCadvisor sets the Prometheus text the kubelet serves on CadvisorPath; until then it serves
// none of the families.
func (k *Kubelet) SetCadvisor(text string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cadvisor = []byte(text)
}

// CadvisorRequests returns how many requests for CadvisorPath reached the kubelet.
func (k *Kubelet) CadvisorRequests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cadvisorRequests
}

// Requests returns how many Summary requests reached the kubelet.
func (k *Kubelet) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

// Tokens returns the bearer tokens presented with Summary requests, in order.
func (k *Kubelet) Tokens() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.tokens...)
}

func (k *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	tok := ""
	if h := r.Header.Get("Authorization"); len(h) > len("Bearer ") {
		tok = h[len("Bearer "):]
	}
	k.mu.Lock()
	body := k.summary
	if r.URL.Path == CadvisorPath {
		k.cadvisorRequests++
		body = k.cadvisor
	} else {
		k.requests++
		k.tokens = append(k.tokens, tok)
	}
	want, delay, status, garbage := k.token, k.delay, k.status, k.garbage
	k.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			// Break the connection: a handler that returns would answer 200 with an empty
			// body, which a caller racing its own timeout may read as a decode failure.
			panic(http.ErrAbortHandler)
		}
	}
	switch {
	case r.URL.Path != SummaryPath && r.URL.Path != CadvisorPath:
		http.NotFound(w, r)
	case want != "" && tok != want:
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	case status != http.StatusOK:
		http.Error(w, http.StatusText(status), status)
	case garbage != nil:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(garbage)
	case r.URL.Path == CadvisorPath:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(body)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}
