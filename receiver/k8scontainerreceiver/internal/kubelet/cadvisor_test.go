// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kubelet

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// realCadvisor is GET /metrics/cadvisor of a kubelet v1.37.2 (containerd, cgroup v1, cgroupfs
// driver under /kfeas) running memhog-child-oom (its children OOM-killed 7 times), memhog-steady
// (never killed) and memhog-oom (in back-off after its kills: no container cgroup).
const realCadvisor = "testdata/kubelet-v1.37.2-metrics-cadvisor.txt"

// kubeletTextType is the Content-Type of the kubelet's text answer.
const kubeletTextType = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"

// ParseOOMEvents reads a Prometheus text exposition, such as the kubelet's /metrics/cadvisor,
// and returns the container_oom_events_total of containers, with the filter of OOMEvents.
// Other families are skipped unparsed. An exposition it cannot read returns an *Error.
func ParseOOMEvents(r io.Reader) ([]OOMCounter, error) {
	counters, err := parseOOMEvents(r, maxExpositionLine, maxCadvisorBytes)
	if err != nil {
		return nil, &Error{Reason: decodeReason(err), Err: fmt.Errorf("decoding %s: %w", oomEventsFamily, err)}
	}
	return counters, nil
}

func readRealCadvisor(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(realCadvisor)
	require.NoError(tb, err)
	return b
}

var realCounters = []OOMCounter{
	{
		Namespace: "default", Pod: "memhog-child-oom", PodUID: "49209e91-9438-4ff8-8fe7-8d4163da3a5d", Container: "hog",
		ContainerID: "a6554e071a84b538646842552b409f483c69290c295c374dd2b3e86ae76071d0", Value: 7,
	},
	{
		Namespace: "default", Pod: "memhog-steady", PodUID: "b5ad9300-c0fd-4569-8811-9608fbabca91", Container: "hog",
		ContainerID: "f95668fb667ba94faeea26f81d2cd85fd4eba47e7835ef54bcadfff31cdd3651", Value: 0,
	},
}

// validCounter is the filter every returned counter passes.
func validCounter(c OOMCounter) bool {
	return c.Namespace != "" && c.Pod != "" && c.Container != "" && c.Container != "POD" && c.ContainerID != "" &&
		!strings.Contains(c.ContainerID, "/") && !strings.Contains(c.PodUID, "_")
}

func TestParseOOMEventsRealKubelet(t *testing.T) {
	t.Parallel()
	got, err := ParseOOMEvents(bytes.NewReader(readRealCadvisor(t)))
	require.NoError(t, err)
	// Not the node's cgroups (/, kubepods, its QoS classes), not the three pods' cgroups, not their
	// pause containers; memhog-oom's container is between runs and has no cgroup.
	assert.Equal(t, realCounters, got)
}

// line is a container_oom_events_total sample with the kubelet's labels.
func line(container, id, name, namespace, pod, value string) string {
	return `container_oom_events_total{container="` + container + `",id="` + id + `",image="i",name="` + name +
		`",namespace="` + namespace + `",pod="` + pod + `"} ` + value + "\n"
}

const header = "# HELP container_oom_events_total Count of out of memory events observed for the container\n" +
	"# TYPE container_oom_events_total counter\n"

func TestParseOOMEventsCgroupForms(t *testing.T) {
	t.Parallel()
	const uid = "49209e91-9438-4ff8-8fe7-8d4163da3a5d"
	const sysUID = "49209e91_9438_4ff8_8fe7_8d4163da3a5d"
	const staticUID = "3d1219c7c4c5404aaa1f6d2a48adfda4"
	const cid = "a6554e071a84b538646842552b409f483c69290c295c374dd2b3e86ae76071d0"
	tests := []struct {
		name, id, nameLabel string
		podUID, containerID string
	}{
		{"cgroupfs", "/kubepods/burstable/pod" + uid + "/" + cid, cid, uid, cid},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid, cid, uid, cid},
		{"cgroupfs static pod", "/kubepods/besteffort/pod" + staticUID + "/" + cid, cid, staticUID, cid},
		{"systemd containerd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + sysUID + ".slice/cri-containerd-" + cid + ".scope", cid, uid, cid},
		{"systemd guaranteed", "/kubepods.slice/kubepods-pod" + sysUID + ".slice/cri-containerd-" + cid + ".scope", cid, uid, cid},
		{"systemd without name", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + sysUID + ".slice/cri-containerd-" + cid + ".scope", "", uid, cid},
		{"systemd docker", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + sysUID + ".slice/docker-" + cid + ".scope", "", uid, cid},
		{"systemd crio", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + sysUID + ".slice/crio-" + cid + ".scope", "", uid, cid},
		{"cgroupfs without name", "/kubepods/burstable/pod" + uid + "/" + cid, "", uid, cid},
		{"no pod in path", "/system.slice/containerd.service", cid, "", cid},
		{"no id", "", cid, "", cid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseOOMEvents(strings.NewReader(header + line("hog", tt.id, tt.nameLabel, "ns", "p", "3")))
			require.NoError(t, err)
			want := []OOMCounter{{Namespace: "ns", Pod: "p", PodUID: tt.podUID, Container: "hog", ContainerID: tt.containerID, Value: 3}}
			assert.Equal(t, want, got)
		})
	}
}

func TestParseOOMEventsSkipsBadSamples(t *testing.T) {
	t.Parallel()
	const pod = "/kubepods/burstable/pod49209e91-9438-4ff8-8fe7-8d4163da3a5d"
	const cid = "a6554e071a84b538646842552b409f483c69290c295c374dd2b3e86ae76071d0"
	tests := []struct {
		name, sample string
	}{
		{"pod cgroup", line("", pod, "", "ns", "p", "1")},
		{"pause container", line("", pod+"/8394a63d", "8394a63d", "ns", "p", "1")},
		{"dockershim sandbox", line("POD", pod+"/8394a63d", "8394a63d", "ns", "p", "1")},
		{"node cgroup", line("", "/", "", "", "", "1")},
		{"no container label", `container_oom_events_total{id="` + pod + "/" + cid + `",name="` + cid + `",namespace="ns",pod="p"} 1` + "\n"},
		{"no labels", "container_oom_events_total 1\n"},
		{"no namespace", line("hog", pod+"/"+cid, cid, "", "p", "1")},
		{"no pod", line("hog", pod+"/"+cid, cid, "ns", "", "1")},
		{"no name, path ends at the pod", line("hog", pod, "", "ns", "p", "1")},
		{"no name, no path", line("hog", "", "", "ns", "p", "1")},
		{"negative", line("hog", pod+"/"+cid, cid, "ns", "p", "-1")},
		{"fraction", line("hog", pod+"/"+cid, cid, "ns", "p", "1.5")},
		{"NaN", line("hog", pod+"/"+cid, cid, "ns", "p", "NaN")},
		{"+Inf", line("hog", pod+"/"+cid, cid, "ns", "p", "+Inf")},
		{"beyond uint64", line("hog", pod+"/"+cid, cid, "ns", "p", "1e20")},
	}
	good := line("ok", pod+"/"+cid, cid, "ns", "p", "2e+00")
	want := []OOMCounter{{Namespace: "ns", Pod: "p", PodUID: "49209e91-9438-4ff8-8fe7-8d4163da3a5d", Container: "ok", ContainerID: cid, Value: 2}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseOOMEvents(strings.NewReader(header + tt.sample + good))
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

func TestParseOOMEventsOnlyItsFamily(t *testing.T) {
	t.Parallel()
	const sample = `{container="hog",id="/kubepods/pod49209e91-9438-4ff8-8fe7-8d4163da3a5d/c1",name="c1",namespace="ns",pod="p"} `
	in := "# HELP container_oom_events_total_foo Not ours.\n" +
		"# TYPE container_oom_events_total_foo gauge\n" +
		"container_oom_events_total_foo" + sample + "5\n" +
		"container_oom_events_totalx" + sample + "6\n" +
		// Malformed lines of other families are not read at all.
		"container_memory_rss{{{ broken\n" +
		"# TYPE container_memory_rss counter counter\n" +
		"# a comment naming container_oom_events_total\n" +
		"#HELP   container_oom_events_total  Spaced out, still ours.\n" +
		"#\tTYPE container_oom_events_total counter\n" +
		"container_oom_events_total" + sample + "7 1795728474110\n" +
		"  container_oom_events_total " + strings.Replace(sample, "c1", "c2", 2) + "8" // no final newline
	got, err := ParseOOMEvents(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, uint64(7), got[0].Value)
	assert.Equal(t, "c1", got[0].ContainerID)
	assert.Equal(t, uint64(8), got[1].Value)
	assert.Equal(t, "c2", got[1].ContainerID)

	// Only the family's lines reach the parser.
	text, err := filterFamily(strings.NewReader(in), []byte(oomEventsFamily), maxExpositionLine, maxCadvisorBytes)
	require.NoError(t, err)
	for l := range strings.Lines(string(text)) {
		assert.Contains(t, l, "container_oom_events_total")
		assert.NotContains(t, l, "container_oom_events_total_foo")
		assert.NotContains(t, l, "container_oom_events_totalx")
	}
	assert.Equal(t, 4, strings.Count(string(text), "\n"))
}

func TestParseOOMEventsEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"",
		header,
		"# HELP machine_cpu_cores Number of logical CPU cores.\nmachine_cpu_cores 2\n",
		// Not a count: dropped like a bad sample.
		"# TYPE container_oom_events_total histogram\n" + line("hog", "/kubepods/pod49209e91-9438-4ff8-8fe7-8d4163da3a5d/c1", "c1", "ns", "p", "1"),
	} {
		got, err := ParseOOMEvents(strings.NewReader(in))
		require.NoError(t, err)
		assert.Empty(t, got)
	}
}

func TestParseOOMEventsMalformed(t *testing.T) {
	t.Parallel()
	const pod = "/kubepods/pod49209e91-9438-4ff8-8fe7-8d4163da3a5d/c1"
	for name, in := range map[string]string{
		"unclosed labels": `container_oom_events_total{container="hog",name="c1",namespace="ns",pod="p" 1` + "\n",
		"no value":        `container_oom_events_total{container="hog"}` + "\n",
		"bad value":       line("hog", pod, "c1", "ns", "p", "seven"),
		"two TYPE lines":  header + "# TYPE container_oom_events_total gauge\n" + line("hog", pod, "c1", "ns", "p", "1"),
		"TYPE too late":   line("hog", pod, "c1", "ns", "p", "1") + "# TYPE container_oom_events_total counter\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseOOMEvents(strings.NewReader(in))
			var ke *Error
			require.ErrorAs(t, err, &ke)
			assert.Equal(t, ReasonDecode, ke.Reason)
		})
	}
	t.Run("read error", func(t *testing.T) {
		t.Parallel()
		_, err := ParseOOMEvents(io.MultiReader(strings.NewReader(header), iotest.ErrReader(errors.New("connection reset"))))
		var ke *Error
		require.ErrorAs(t, err, &ke)
		assert.Equal(t, ReasonDecode, ke.Reason)
		assert.ErrorContains(t, err, "connection reset")
	})
}

func TestParseOOMEventsHugeLines(t *testing.T) {
	t.Parallel()
	real := readRealCadvisor(t)
	huge := strings.Repeat("x", 4*maxExpositionLine)

	// Another family's huge line, a huge comment and a huge line of garbage are skipped.
	in := `container_memory_rss{id="` + huge + `"} 1` + "\n# " + huge + "\n" + huge + "\n" + string(real)
	got, err := ParseOOMEvents(strings.NewReader(in))
	require.NoError(t, err)
	assert.Equal(t, realCounters, got)

	// One of the family's is an error, not a silently missing counter.
	in = string(real) + line("hog", "/kubepods/pod49209e91-9438-4ff8-8fe7-8d4163da3a5d/c1", "c1", "ns", huge, "1")
	_, err = ParseOOMEvents(strings.NewReader(in))
	var ke *Error
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, ReasonDecode, ke.Reason)
	assert.ErrorContains(t, err, "longer than")

	// A line just within the bound is read.
	pod := strings.Repeat("p", maxExpositionLine-len(line("hog", "/x", "c1", "ns", "", "1")))
	got, err = ParseOOMEvents(strings.NewReader(line("hog", "/x", "c1", "ns", pod, "1")))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, pod, got[0].Pod)
}

func TestParseOOMEventsTotalBound(t *testing.T) {
	t.Parallel()
	real := readRealCadvisor(t)
	got, err := parseOOMEvents(bytes.NewReader(real), maxExpositionLine, int64(len(real)))
	require.NoError(t, err)
	assert.Equal(t, realCounters, got)

	_, err = parseOOMEvents(bytes.NewReader(real), maxExpositionLine, int64(len(real)-1))
	assert.ErrorContains(t, err, "larger than")
}

// cadvisorKubelet is a kubelet's /metrics/cadvisor over TLS that wants Bearer token-1.
type cadvisorKubelet struct {
	t      *testing.T
	server *httptest.Server
	body   []byte
	status int
	ctype  string
	delay  time.Duration
	stall  bool // send half the body, then wait for the caller to give up and break the connection

	mu       sync.Mutex
	requests []*http.Request
}

func newCadvisorKubelet(t *testing.T, body []byte) *cadvisorKubelet {
	t.Helper()
	return &cadvisorKubelet{t: t, body: body, status: http.StatusOK, ctype: kubeletTextType}
}

// start serves k and returns a client with the service-account token token-1 and its endpoint.
func (k *cadvisorKubelet) start(timeout time.Duration) (*Client, string) {
	t := k.t
	t.Helper()
	k.server = httptest.NewTLSServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.server.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.server.Certificate().Raw}), 0o600))
	tokenFile := filepath.Join(dir, "token")
	writeToken(t, tokenFile, "token-1")
	c, err := NewClient(Settings{AuthType: AuthServiceAccount, CAFile: ca, Timeout: timeout, TokenFile: tokenFile})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, k.server.Listener.Addr().String()
}

func (k *cadvisorKubelet) seen() []*http.Request {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.requests
}

func (k *cadvisorKubelet) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.requests = append(k.requests, r.Clone(context.Background()))
	k.mu.Unlock()
	if k.delay > 0 {
		select {
		case <-time.After(k.delay):
		case <-r.Context().Done():
			// Break the connection rather than answer: the client could still read an
			// answer that comes before its own close.
			panic(http.ErrAbortHandler)
		}
	}
	switch {
	case r.URL.Path != "/metrics/cadvisor":
		http.NotFound(w, r)
		return
	case r.Header.Get("Authorization") != "Bearer token-1":
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	case k.status != http.StatusOK:
		http.Error(w, http.StatusText(k.status), k.status)
		return
	}
	w.Header().Set("Content-Type", k.ctype)
	body := k.body
	if k.stall {
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		panic(http.ErrAbortHandler) // likewise: no clean end of the body

	}
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(body)
		_ = zw.Close()
		return
	}
	_, _ = w.Write(body)
}

func TestOOMEvents(t *testing.T) {
	t.Parallel()
	k := newCadvisorKubelet(t, readRealCadvisor(t))
	c, endpoint := k.start(ampleTimeout)

	got, err := c.OOMEvents(context.Background(), endpoint)
	require.NoError(t, err)
	assert.Equal(t, realCounters, got)

	// A URL works as well as host:port.
	got, err = c.OOMEvents(context.Background(), k.server.URL+"/")
	require.NoError(t, err)
	assert.Equal(t, realCounters, got)

	reqs := k.seen()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		assert.Equal(t, "/metrics/cadvisor", r.URL.Path)
		assert.Equal(t, "Bearer token-1", r.Header.Get("Authorization"))
		assert.Equal(t, "text/plain;version=0.0.4", r.Header.Get("Accept"))
		// The answer came gzipped: the transport asked for it and inflated it.
		assert.Equal(t, "gzip", r.Header.Get("Accept-Encoding"))
	}
}

func TestOOMEventsFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(*cadvisorKubelet)
		reason string
	}{
		{"500", func(k *cadvisorKubelet) { k.status = http.StatusInternalServerError }, ReasonStatus},
		{"403", func(k *cadvisorKubelet) { k.status = http.StatusForbidden }, ReasonStatus},
		{"html", func(k *cadvisorKubelet) { k.ctype = "text/html"; k.body = []byte("<html>") }, ReasonDecode},
		{"protobuf", func(k *cadvisorKubelet) {
			k.ctype = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
		}, ReasonDecode},
		{"malformed", func(k *cadvisorKubelet) { k.body = []byte(header + "container_oom_events_total{\n") }, ReasonDecode},
		{"timeout before the answer", func(k *cadvisorKubelet) { k.delay = 10 * time.Second }, ReasonTimeout},
		{"timeout in the body", func(k *cadvisorKubelet) { k.stall = true }, ReasonTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := newCadvisorKubelet(t, readRealCadvisor(t))
			tt.setup(k)
			timeout := 5 * time.Second // ample for a loaded machine
			if tt.reason == ReasonTimeout {
				timeout = 300 * time.Millisecond
			}
			c, endpoint := k.start(timeout)
			_, err := c.OOMEvents(context.Background(), endpoint)
			var ke *Error
			require.ErrorAs(t, err, &ke)
			assert.Equal(t, tt.reason, ke.Reason, "%v", err)
		})
	}
}

func TestOOMEventsWrongToken(t *testing.T) {
	t.Parallel()
	k := newCadvisorKubelet(t, readRealCadvisor(t))
	c, endpoint := k.start(ampleTimeout)
	c.token = &fileToken{path: filepath.Join(t.TempDir(), "token")}
	writeToken(t, c.token.path, "token-2")
	_, err := c.OOMEvents(context.Background(), endpoint)
	var ke *Error
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, ReasonStatus, ke.Reason)
	assert.ErrorContains(t, err, "401")
	assert.Equal(t, "Bearer token-2", k.seen()[0].Header.Get("Authorization"))
}

func FuzzParseOOMEvents(f *testing.F) {
	const pod = "/kubepods/burstable/pod49209e91-9438-4ff8-8fe7-8d4163da3a5d/"
	f.Add(readRealCadvisor(f))
	f.Add([]byte(header + line("hog", pod+"c1", "c1", "ns", "p", "1")))
	f.Add([]byte(header + line("hog", "/kubepods.slice/kubepods-pod49209e91_9438_4ff8_8fe7_8d4163da3a5d.slice/crio-c1.scope", "", "ns", "p", "1")))
	f.Add([]byte(header + line("", pod, "", "ns", "p", "1") + line("POD", pod+"c1", "c1", "ns", "p", "1")))
	f.Add([]byte(line("hog", "/pod/", "", "ns", "p", "NaN") + "container_oom_events_total_foo{} 1\n"))
	f.Add([]byte("# TYPE container_oom_events_total summary\ncontainer_oom_events_total{quantile=\"0.5\"} 1\n"))
	f.Add([]byte(`container_oom_events_total{container="a\"b",name="\\",namespace="\n",pod="p"} 1e3 -5` + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ParseOOMEvents(bytes.NewReader(in))
		if err != nil {
			var ke *Error
			if !assert.ErrorAs(t, err, &ke) || ke.Reason != ReasonDecode {
				t.Fatalf("not a decode error: %v", err)
			}
			return
		}
		for _, c := range got {
			if !validCounter(c) {
				t.Fatalf("counter outside the filter: %+v", c)
			}
		}
	})
}
