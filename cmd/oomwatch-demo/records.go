// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// The agent sends its kill records over OTLP/HTTP to the demo too, which keeps the latest of
// each container to say why it was killed.

const (
	eventContainerKill = "k8s.container.oom_kill"
	eventProcessKill   = "k8s.container.process.oom_kill"
	// maxRecordsBody bounds one request; the agent batches a second of records.
	maxRecordsBody = 16 << 20
)

// explanation is what the latest kill record of a container says.
type explanation struct {
	at          pcommon.Timestamp
	mainProcess bool
	scope       string
	growthClass string
	process     string
	pid         int64
}

// String is the explanation in a few words: the limit, how the memory came to it (of a
// container kill) or that PID 1 lived on (of a process kill), and the process the kernel killed.
func (e explanation) String() string {
	parts := []string{scopeWords(e.scope)}
	switch {
	case !e.mainProcess:
		parts = append(parts, "not PID 1")
	case e.growthClass != "":
		parts = append(parts, strings.ReplaceAll(e.growthClass, "_", " "))
	}
	if e.process != "" {
		parts = append(parts, "killed "+e.process+"["+strconv.FormatInt(e.pid, 10)+"]")
	}
	return strings.Join(parts, ", ")
}

func scopeWords(scope string) string {
	switch scope {
	case "container":
		return "own limit"
	case "pod":
		return "pod limit"
	case "node_allocatable":
		return "node allocatable"
	case "node":
		return "node out of memory"
	}
	return "limit unknown"
}

// killRecords serves OTLP/HTTP logs and keeps the latest kill record of each container.
type killRecords struct {
	mu     sync.Mutex
	latest map[containerKey]explanation
}

func newKillRecords() *killRecords {
	return &killRecords{latest: map[containerKey]explanation{}}
}

// explanations returns a copy of what is kept.
func (k *killRecords) explanations() map[containerKey]explanation {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.latest)
}

func (k *killRecords) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/logs" {
		http.Error(w, "only POST /v1/logs", http.StatusNotFound)
		return
	}
	var in io.Reader = http.MaxBytesReader(w, r.Body, maxRecordsBody)
	switch r.Header.Get("Content-Encoding") {
	case "":
	case "gzip":
		// The collector's OTLP/HTTP exporter compresses by default.
		zr, err := gzip.NewReader(in)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		in = io.LimitReader(zr, maxRecordsBody+1)
	default:
		http.Error(w, "unsupported content encoding "+r.Header.Get("Content-Encoding"), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(in)
	if err != nil || len(body) > maxRecordsBody {
		http.Error(w, "reading the request body failed or it is over 16 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	req := plogotlp.NewExportRequest()
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "application/x-protobuf":
		err = req.UnmarshalProto(body)
	case "application/json":
		err = req.UnmarshalJSON(body)
	default:
		err = fmt.Errorf("unsupported content type %q", mediaType)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	k.add(req.Logs())
	resp, err := plogotlp.NewExportResponse().MarshalProto()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// add keeps, of each container, the newest of the kill records and those kept.
func (k *killRecords) add(logs plog.Logs) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, rl := range logs.ResourceLogs().All() {
		key, ok := recordKey(rl.Resource().Attributes())
		if !ok {
			continue
		}
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				e, ok := explain(lr)
				if !ok {
					continue
				}
				if prev, seen := k.latest[key]; !seen || e.at >= prev.at {
					k.latest[key] = e
				}
			}
		}
	}
}

// recordKey names the container a record's resource is about, as the exporter's labels do.
func recordKey(attrs pcommon.Map) (containerKey, bool) {
	str := func(name string) string {
		if v, ok := attrs.Get(name); ok {
			return v.Str()
		}
		return ""
	}
	pod := str("k8s.pod.name")
	k := containerKey{
		Namespace: str("k8s.namespace.name"),
		Workload:  cmp.Or(str("k8s.deployment.name"), str("k8s.job.name"), pod),
		Container: str("k8s.container.name"),
	}
	return k, k.Namespace != "" && pod != "" && k.Container != ""
}

func explain(lr plog.LogRecord) (explanation, bool) {
	if lr.EventName() != eventContainerKill && lr.EventName() != eventProcessKill {
		return explanation{}, false
	}
	attrs := lr.Attributes()
	e := explanation{at: lr.Timestamp(), mainProcess: lr.EventName() == eventContainerKill}
	if v, ok := attrs.Get("k8s.oom.main_process"); ok {
		e.mainProcess = v.Bool()
	}
	if v, ok := attrs.Get("k8s.oom.scope"); ok {
		e.scope = v.Str()
	}
	if v, ok := attrs.Get("k8s.oom.growth_class"); ok {
		e.growthClass = v.Str()
	}
	if v, ok := attrs.Get("process.executable.name"); ok {
		e.process = v.Str()
	}
	if v, ok := attrs.Get("process.pid"); ok {
		e.pid = v.Int()
	}
	if e.at == 0 {
		e.at = lr.ObservedTimestamp()
	}
	return e, true
}
