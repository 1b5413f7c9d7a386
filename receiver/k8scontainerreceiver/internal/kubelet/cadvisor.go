// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kubelet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// oomEventsFamily is the cAdvisor counter of the OOM kills seen in a cgroup.
const oomEventsFamily = "container_oom_events_total"

const (
	// maxCadvisorBytes bounds the body read, like maxSummaryBytes: a node at its pod limit
	// answers /metrics/cadvisor with several MiB (about 8 MiB at 110 pods of 3 containers).
	maxCadvisorBytes = maxSummaryBytes
	// maxExpositionLine bounds one line of the exposition; the kubelet's longest are a few
	// hundred bytes.
	maxExpositionLine = 64 << 10
)

// OOMCounter is one container instance's container_oom_events_total.
type OOMCounter struct {
	Namespace, Pod, PodUID, Container, ContainerID string
	Value                                          uint64
	// GroupKills are the kills of all the instance's processes at once (cgroup v2's
	// oom_group_kill), which Value counts too; only the cgroup filesystem tells them.
	GroupKills uint64
}

// OOMEvents fetches GET <endpoint>/metrics/cadvisor and returns the container_oom_events_total
// of containers: not of pods, not of pause (sandbox) cgroups, not of the node's own cgroups.
// endpoint is host:port (https is implied) or a URL. A failed request returns an *Error.
func (c *Client) OOMEvents(ctx context.Context, endpoint string) ([]OOMCounter, error) {
	// The text format, not protobuf. Accept-Encoding stays unset: Go's transport then asks for
	// gzip, which the kubelet sends, and inflates the answer by itself.
	resp, err := c.get(ctx, endpoint, "/metrics/cadvisor", "text/plain;version=0.0.4")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if expfmt.ResponseFormat(resp.Header).FormatType() != expfmt.TypeTextPlain {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, &Error{Reason: ReasonDecode, Err: fmt.Errorf("GET %s: content type %q is not the Prometheus text format",
			resp.Request.URL.Redacted(), resp.Header.Get("Content-Type"))}
	}
	// The body is read to its end (or its bound), so the connection is kept for the next scrape.
	counters, err := parseOOMEvents(resp.Body, maxExpositionLine, maxCadvisorBytes)
	if err != nil {
		return nil, &Error{Reason: decodeReason(err), Err: fmt.Errorf("decoding %s from %s: %w", oomEventsFamily, resp.Request.URL.Redacted(), err)}
	}
	return counters, nil
}

// decodeReason is the reason of a failure while the body is read: a timeout, or else decode.
func decodeReason(err error) string {
	if classify(err) == ReasonTimeout {
		return ReasonTimeout
	}
	return ReasonDecode
}

func parseOOMEvents(r io.Reader, maxLine int, maxTotal int64) ([]OOMCounter, error) {
	text, err := filterFamily(r, []byte(oomEventsFamily), maxLine, maxTotal)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	var counters []OOMCounter
	for _, m := range families[oomEventsFamily].GetMetric() {
		if c, ok := oomCounter(m); ok {
			counters = append(counters, c)
		}
	}
	return counters, nil
}

// filterFamily returns the lines of the family name in r (its HELP and TYPE comments and its
// samples) and skips every other line, so that the parser sees a few hundred lines instead of
// the tens of thousands of the ~80 families cAdvisor exposes. The text format is line-based:
// no line needs another family's lines. At most maxTotal bytes are read, and a line may have at
// most maxLine bytes: a longer one is skipped, or is an error when it is one of the family's.
func filterFamily(r io.Reader, name []byte, maxLine int, maxTotal int64) ([]byte, error) {
	limited := &io.LimitedReader{R: r, N: maxTotal + 1}
	br := bufio.NewReaderSize(limited, maxLine)
	var out []byte
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if inFamily(line, name) {
				return nil, fmt.Errorf("a line of %s is longer than %d bytes", name, maxLine)
			}
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		case len(line) > 0 && inFamily(line, name):
			out = append(out, line...)
			if line[len(line)-1] != '\n' {
				out = append(out, '\n')
			}
		}
		if limited.N <= 0 {
			return nil, fmt.Errorf("exposition larger than %d bytes", maxTotal)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// inFamily reports whether line is a sample, or the HELP or TYPE comment, of the family name.
// The name must be followed by '{', a blank or the line's end: a family whose name only starts
// with it (name_foo) is another family.
func inFamily(line, name []byte) bool {
	line = bytes.TrimLeft(line, " \t")
	if comment, ok := bytes.CutPrefix(line, []byte("#")); ok {
		comment = bytes.TrimLeft(comment, " \t")
		if !bytes.HasPrefix(comment, []byte("HELP")) && !bytes.HasPrefix(comment, []byte("TYPE")) {
			return false
		}
		line = bytes.TrimLeft(comment[len("HELP"):], " \t")
	}
	rest, ok := bytes.CutPrefix(line, name)
	return ok && (len(rest) == 0 || bytes.IndexByte([]byte("{ \t\r\n"), rest[0]) >= 0)
}

// oomCounter reads one sample. It keeps only a container's: pod-level, sandbox (pause) and node
// cgroups have an empty container label ("POD" for the sandbox under dockershim). The value
// must be a count: a negative, fractional or infinite value, or NaN, drops the sample.
func oomCounter(m *dto.Metric) (OOMCounter, bool) {
	var c OOMCounter
	var cgroup string
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case "namespace":
			c.Namespace = l.GetValue()
		case "pod":
			c.Pod = l.GetValue()
		case "container":
			c.Container = l.GetValue()
		case "name":
			c.ContainerID = l.GetValue()
		case "id":
			cgroup = l.GetValue()
		}
	}
	if c.Namespace == "" || c.Pod == "" || c.Container == "" || c.Container == "POD" {
		return OOMCounter{}, false
	}
	var idFromCgroup string
	c.PodUID, idFromCgroup = cgroupIDs(cgroup)
	if c.ContainerID == "" {
		c.ContainerID = idFromCgroup
	}
	if c.ContainerID == "" {
		return OOMCounter{}, false
	}
	var v float64
	switch {
	case m.GetCounter() != nil:
		v = m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		v = m.GetUntyped().GetValue()
	case m.GetGauge() != nil:
		v = m.GetGauge().GetValue()
	default:
		return OOMCounter{}, false
	}
	if v < 0 || v >= 1<<64 || v != math.Trunc(v) { // NaN fails the last test
		return OOMCounter{}, false
	}
	c.Value = uint64(v)
	return c, true
}

// runtimePrefixes start a container's cgroup name under the systemd cgroup driver.
var runtimePrefixes = []string{"cri-containerd-", "docker-", "crio-"}

// cgroupIDs reads a container's cgroup path, in the cgroupfs or the systemd driver's form:
//
//	/kubepods/burstable/pod<uid>/<container id>
//	/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _ for ->.slice/cri-containerd-<container id>.scope
//
// It returns the pod's UID and the container ID, the last segment when one follows the pod's.
// Both are empty when no segment is a pod's.
func cgroupIDs(path string) (podUID, containerID string) {
	segments := strings.Split(path, "/")
	for i, seg := range segments {
		if podUID = segmentPodUID(seg); podUID == "" {
			continue
		}
		if i < len(segments)-1 {
			containerID = strings.TrimSuffix(segments[len(segments)-1], ".scope")
			for _, p := range runtimePrefixes {
				if id, ok := strings.CutPrefix(containerID, p); ok {
					containerID = id
					break
				}
			}
		}
		return podUID, containerID
	}
	return "", ""
}

// segmentPodUID returns the pod UID of a cgroup path segment, pod<uid> or
// kubepods[-<qos>]-pod<uid>.slice, or "". A UID is an API server's UUID or, for a static pod,
// the 32 hex digits of its manifest's hash.
func segmentPodUID(seg string) string {
	uid, ok := strings.CutPrefix(seg, "pod")
	if !ok {
		slice, ok := strings.CutSuffix(seg, ".slice")
		i := strings.LastIndex(slice, "-pod")
		if !ok || i < 0 {
			return ""
		}
		uid = strings.ReplaceAll(slice[i+len("-pod"):], "_", "-")
	}
	if len(uid) < 32 || strings.Trim(uid, "0123456789abcdef-") != "" {
		return ""
	}
	return uid
}
