// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeLeases is the API server's Lease endpoint for one node, with a resourceVersion check.
type fakeLeases struct {
	mu      sync.Mutex
	lease   map[string]any
	version int
	calls   []string
}

func (f *fakeLeases) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	const base = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	var in map[string]any
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &in)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == base+"/standin":
		if f.lease == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(f.lease)
	case r.Method == http.MethodPost && r.URL.Path == base:
		f.store(in)
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPut && r.URL.Path == base+"/standin":
		meta, _ := in["metadata"].(map[string]any)
		if meta["resourceVersion"] != f.lease["metadata"].(map[string]any)["resourceVersion"] {
			w.WriteHeader(http.StatusConflict)
			return
		}
		f.store(in)
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

func (f *fakeLeases) store(lease map[string]any) {
	f.version++
	lease["metadata"].(map[string]any)["resourceVersion"] = strconv.Itoa(f.version)
	f.lease = lease
}

func (f *fakeLeases) spec() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lease["spec"].(map[string]any)
}

func TestRenewCreatesThenUpdatesTheLease(t *testing.T) {
	t.Parallel()
	f := &fakeLeases{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	l := leaser{client: srv.Client(), server: srv.URL, node: "standin"}
	ctx := context.Background()

	first := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	require.NoError(t, l.renew(ctx, first))
	assert.Equal(t, "standin", f.spec()["holderIdentity"])
	assert.Equal(t, "2026-01-02T03:04:05.123456Z", f.spec()["renewTime"], "a MicroTime")
	assert.EqualValues(t, leaseDuration, f.spec()["leaseDurationSeconds"])

	// A field someone else set is kept; the renewal moves renewTime only.
	f.mu.Lock()
	f.lease["spec"].(map[string]any)["acquireTime"] = "2026-01-02T03:04:05.000000Z"
	f.mu.Unlock()
	require.NoError(t, l.renew(ctx, first.Add(10*time.Second)))
	assert.Equal(t, "2026-01-02T03:04:15.123456Z", f.spec()["renewTime"])
	assert.Equal(t, "2026-01-02T03:04:05.000000Z", f.spec()["acquireTime"])
	assert.Equal(t, []string{
		"GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/standin",
		"POST /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
		"GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/standin",
		"PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/standin",
	}, f.calls)
}

func TestRenewReportsARefusal(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	l := leaser{client: srv.Client(), server: srv.URL, node: "standin"}
	require.ErrorContains(t, l.renew(context.Background(), time.Now()), "Forbidden")
}
