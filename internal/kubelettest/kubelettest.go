// Package kubelettest serves a kubelet's Summary API (/stats/summary) over TLS from memory, for
// tests of anything that reads container stats: the answer, the status code, a garbage body,
// a slow answer and the bearer token it accepts are set per test.
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

// Requests returns how many requests reached the kubelet.
func (k *Kubelet) Requests() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

// Tokens returns the bearer tokens presented, in order.
func (k *Kubelet) Tokens() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.tokens...)
}

func (k *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.requests++
	tok := ""
	if h := r.Header.Get("Authorization"); len(h) > len("Bearer ") {
		tok = h[len("Bearer "):]
	}
	k.tokens = append(k.tokens, tok)
	want, delay, status, garbage, body := k.token, k.delay, k.status, k.garbage, k.summary
	k.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case r.URL.Path != SummaryPath:
		http.NotFound(w, r)
	case want != "" && tok != want:
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	case status != http.StatusOK:
		http.Error(w, http.StatusText(status), status)
	case garbage != nil:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(garbage)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}
