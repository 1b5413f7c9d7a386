// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// What the real node itself says about OOM kills, beside the pod status: the kernel's count in
// the container's memory cgroup, the kubelet's container_oom_events_total on /metrics/cadvisor,
// and the kernel log both of them come from.

// memoryCgroupMount is the cgroup v1 memory hierarchy (the node runs on a cgroup v1 host).
const memoryCgroupMount = "/sys/fs/cgroup/memory"

// bareContainerID drops the runtime scheme of a status' container ID ("containerd://<id>").
func bareContainerID(containerID string) string {
	if _, id, ok := strings.Cut(containerID, "://"); ok {
		return id
	}
	return containerID
}

// podMemoryCgroup is the memory cgroup folder of a pod: the kubelet (cgroupfs driver) names it
// pod<UID> under <cgroupRoot>/kubepods, in the folder of the pod's QoS class unless the pod is
// Guaranteed. The error wraps fs.ErrNotExist when no such folder exists.
func podMemoryCgroup(podUID string) (string, error) {
	kubepods := filepath.Join(memoryCgroupMount, env.cluster.Options().CgroupRoot, "kubepods")
	for _, qos := range []string{"", "burstable", "besteffort"} {
		dir := filepath.Join(kubepods, qos, "pod"+podUID)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no memory cgroup for pod %s under %s: %w", podUID, kubepods, os.ErrNotExist)
}

// containerMemoryCgroup is the memory cgroup folder of one container instance: its ID under the
// pod's folder.
func containerMemoryCgroup(podUID, containerID string) (string, error) {
	pod, err := podMemoryCgroup(podUID)
	if err != nil {
		return "", err
	}
	return filepath.Join(pod, bareContainerID(containerID)), nil
}

// readOOMKill reads oom_kill from a cgroup v1 memory.oom_control: the number of processes of
// that very cgroup the OOM killer has killed (v1 does not add a child cgroup's kills to its
// parents'). The error wraps fs.ErrNotExist once the cgroup is gone, or going: a cgroup being
// removed answers ENODEV.
func readOOMKill(cgroupDir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(cgroupDir, "memory.oom_control"))
	if errors.Is(err, syscall.ENODEV) {
		return 0, fmt.Errorf("%w: %w", os.ErrNotExist, err)
	}
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s/memory.oom_control has no oom_kill line: %q", cgroupDir, b)
}

// readKernelOOMKills is the kernel's OOM kill count of a container instance. The error wraps
// fs.ErrNotExist when its cgroup (or its pod's) is gone, as it is soon after the container ends.
func readKernelOOMKills(podUID, containerID string) (uint64, error) {
	dir, err := containerMemoryCgroup(podUID, containerID)
	if err != nil {
		return 0, err
	}
	return readOOMKill(dir)
}

// kernelOOMKills is the kernel's OOM kill count of a running container instance, from
// memory.oom_control in its cgroup; the test fails if the cgroup cannot be read.
func kernelOOMKills(t *testing.T, podUID, containerID string) uint64 {
	t.Helper()
	n, err := readKernelOOMKills(podUID, containerID)
	require.NoError(t, err)
	return n
}

// podKernelOOMKills is oom_kill of every container cgroup of a pod that exists right now (the
// sandbox's included), by bare container ID.
func podKernelOOMKills(podUID string) (map[string]uint64, error) {
	pod, err := podMemoryCgroup(podUID)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(pod)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n, err := readOOMKill(filepath.Join(pod, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // removed between the listing and the read
		}
		if err != nil {
			return nil, err
		}
		out[e.Name()] = n
	}
	return out, nil
}

// cadvisorContainer names a container instance as /metrics/cadvisor labels it: namespace, pod
// and container name, and the container ID (the series' name label). The sandbox has an empty
// Container.
type cadvisorContainer struct {
	Namespace, Pod, Container, ID string
}

// kubeletMetrics reaches the real node's kubelet at the address its Node object advertises,
// as the collector does, with the cluster admin's client certificate (allowed nodes/metrics by
// the kubelet's webhook authorizer) and the cluster CA.
var kubeletMetrics = sync.OnceValues(func() (*kubeletEndpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := env.admin.CoreV1().Nodes().Get(ctx, env.realNode, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var addr string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("node %s advertises no InternalIP", env.realNode)
	}
	cfg, err := env.cluster.RESTConfig()
	if err != nil {
		return nil, err
	}
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	return &kubeletEndpoint{
		base: "https://" + net.JoinHostPort(addr, strconv.Itoa(int(node.Status.DaemonEndpoints.KubeletEndpoint.Port))),
		hc:   &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}},
	}, nil
})

type kubeletEndpoint struct {
	base string
	hc   *http.Client
}

// readCadvisorOOMEvents fetches the kubelet's /metrics/cadvisor and returns
// container_oom_events_total of every container instance it lists (pod-level and node-level
// cgroups, which have no container ID, are left out). It uses no *testing.T, for samplers.
func readCadvisorOOMEvents(ctx context.Context) (map[cadvisorContainer]uint64, error) {
	k, err := kubeletMetrics()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/metrics/cadvisor", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := k.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics/cadvisor: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics/cadvisor: %w", err)
	}
	out := map[cadvisorContainer]uint64{}
	for _, m := range families["container_oom_events_total"].GetMetric() {
		var c cadvisorContainer
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "namespace":
				c.Namespace = l.GetValue()
			case "pod":
				c.Pod = l.GetValue()
			case "container":
				c.Container = l.GetValue()
			case "name":
				c.ID = l.GetValue()
			}
		}
		if c.ID != "" {
			out[c] = uint64(m.GetCounter().GetValue())
		}
	}
	return out, nil
}

// cadvisorOOMEvents is container_oom_events_total per container instance on the real node's
// /metrics/cadvisor.
func cadvisorOOMEvents(t *testing.T) map[cadvisorContainer]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := readCadvisorOOMEvents(ctx)
	require.NoError(t, err)
	return out
}

// cadvisorOOMEventsOf picks one container instance out of cadvisorOOMEvents' answer; false when
// /metrics/cadvisor does not list it.
func cadvisorOOMEventsOf(all map[cadvisorContainer]uint64, containerID string) (uint64, cadvisorContainer, bool) {
	id := bareContainerID(containerID)
	for c, n := range all {
		if c.ID == id {
			return n, c, true
		}
	}
	return 0, cadvisorContainer{}, false
}

// kmsgRecord is one record of the kernel log (/dev/kmsg): its kernel timestamp (since boot),
// when the test read it, and its first line.
type kmsgRecord struct {
	Seq      uint64
	Kernel   time.Duration
	Received time.Time
	Message  string
}

// kernelLog follows the kernel log from the moment it is opened, as the kubelet's OOM watcher
// does, and keeps every record until the test ends.
type kernelLog struct {
	mu      sync.Mutex
	records []kmsgRecord
	// lost counts the times the kernel overwrote records before they were read (EPIPE).
	lost int
}

func followKernelLog(t *testing.T) *kernelLog {
	t.Helper()
	f, err := os.Open("/dev/kmsg")
	require.NoError(t, err)
	_, err = f.Seek(0, io.SeekEnd) // from now on
	require.NoError(t, err)
	k := &kernelLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 8192)
		for {
			n, err := f.Read(buf)
			switch {
			case err == nil:
			case errors.Is(err, syscall.EPIPE):
				k.mu.Lock()
				k.lost++
				k.mu.Unlock()
				continue
			default:
				return
			}
			received := time.Now()
			// PRIORITY,SEQUENCE,MICROSECONDS,FLAGS;MESSAGE, continuation lines (" KEY=value")
			// after the message's first line.
			meta, msg, ok := bytes.Cut(buf[:n], []byte(";"))
			if !ok {
				continue
			}
			fields := strings.Split(string(meta), ",")
			if len(fields) < 3 {
				continue
			}
			seq, _ := strconv.ParseUint(fields[1], 10, 64)
			us, _ := strconv.ParseInt(fields[2], 10, 64)
			line, _, _ := strings.Cut(string(msg), "\n")
			k.mu.Lock()
			k.records = append(k.records, kmsgRecord{Seq: seq, Kernel: time.Duration(us) * time.Microsecond, Received: received, Message: line})
			k.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = f.Close()
		<-done
	})
	return k
}

// snapshot returns the records read so far and how many times records were lost.
func (k *kernelLog) snapshot() ([]kmsgRecord, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kmsgRecord(nil), k.records...), k.lost
}

// kmsgOOM is an OOM kill, or the report of one, in the kernel log.
type kmsgOOM struct {
	kmsgRecord
	Pid  int
	Comm string
}

// oomSummaries returns, from the kernel log read so far, the OOM summaries of one container
// cgroup: the "oom-kill:...,task_memcg=<cgroup>/<container ID>,task=<comm>,pid=<pid>,..." lines.
// The kernel prints them only in OOM reports its rate limit lets through (10 reports in 5 s for
// the whole host); the kubelet's OOM watcher counts exactly these.
func (k *kernelLog) oomSummaries(containerID string) []kmsgOOM {
	memcg := "/" + bareContainerID(containerID) + ","
	records, _ := k.snapshot()
	var out []kmsgOOM
	for _, r := range records {
		rest, ok := strings.CutPrefix(r.Message, "oom-kill:")
		if !ok {
			continue
		}
		_, task, ok := strings.Cut(rest, ",task_memcg=")
		if !ok || !strings.Contains(task, memcg) {
			continue
		}
		o := kmsgOOM{kmsgRecord: r}
		for _, kv := range strings.Split(task, ",") {
			if v, ok := strings.CutPrefix(kv, "task="); ok {
				o.Comm = v
			}
			if v, ok := strings.CutPrefix(kv, "pid="); ok {
				o.Pid, _ = strconv.Atoi(v)
			}
		}
		out = append(out, o)
	}
	return out
}

// oomKills returns the kernel log's "...: Killed process <pid> (<comm>) ..." lines of processes
// named comm (all when comm is ""): one for every OOM kill on the host, whether its report was
// rate-limited or not. The line does not name the cgroup.
func (k *kernelLog) oomKills(comm string) []kmsgOOM {
	records, _ := k.snapshot()
	var out []kmsgOOM
	for _, r := range records {
		_, rest, ok := strings.Cut(r.Message, "out of memory: Killed process ")
		if !ok {
			continue
		}
		pid, rest, _ := strings.Cut(rest, " (")
		name, _, _ := strings.Cut(rest, ")")
		if comm != "" && name != comm {
			continue
		}
		o := kmsgOOM{kmsgRecord: r, Comm: name}
		o.Pid, _ = strconv.Atoi(pid)
		out = append(out, o)
	}
	return out
}

// suppressedOOMReports adds up the kernel's "oom_kill_process: N callbacks suppressed" notes
// read after the record numbered since: OOM reports the rate limit left out, of any cgroup on
// the host. The kernel prints the note of a rate-limit window at the first OOM report after the
// window, just before it: the notes after a test's first report are those of the windows its
// kills opened, except the last window's, which may not be there yet.
func (k *kernelLog) suppressedOOMReports(since uint64) int {
	records, _ := k.snapshot()
	n := 0
	for _, r := range records {
		if r.Seq <= since {
			continue
		}
		rest, ok := strings.CutPrefix(r.Message, "oom_kill_process: ")
		if !ok {
			continue
		}
		if v, ok := strings.CutSuffix(rest, " callbacks suppressed"); ok {
			if m, err := strconv.Atoi(v); err == nil {
				n += m
			}
		}
	}
	return n
}
