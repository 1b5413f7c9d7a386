// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// kernelLogFile is a file of /dev/kmsg records, as the kernel writes them, of a kernel that
// booted an hour before podtest.T0.
type kernelLogFile struct {
	t    *testing.T
	path string
	seq  int
}

var kernelBoot = podtest.T0.Add(-time.Hour)

func newKernelLogFile(t *testing.T) *kernelLogFile {
	f := &kernelLogFile{t: t, path: filepath.Join(t.TempDir(), "kmsg")}
	require.NoError(t, os.WriteFile(f.path, nil, 0o600))
	return f
}

// record appends one record at at.
func (f *kernelLogFile) record(level int, at time.Time, msg string) {
	f.t.Helper()
	f.seq++
	file, err := os.OpenFile(f.path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(f.t, err)
	defer file.Close()
	_, err = fmt.Fprintf(file, "%d,%d,%d,-;%s\n", level, f.seq, at.Sub(kernelBoot).Microseconds(), msg)
	require.NoError(f.t, err)
}

// kill appends the kernel's report of a kill in a container of pod u1; without its summary when
// headless, as when the kernel rate-limits it away.
func (f *kernelLogFile) kill(at time.Time, oomMemcg, container string, pid int, headless bool) {
	task := "/kubepods/burstable/podu1/" + container
	if !headless {
		f.record(6, at, fmt.Sprintf("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=%s,mems_allowed=0,oom_memcg=%s,task_memcg=%s,task=workload,pid=%d,uid=0", container, oomMemcg, task, pid))
	}
	f.record(3, at, fmt.Sprintf("Memory cgroup out of memory: Killed process %d (workload) total-vm:1293432kB, anon-rss:63872kB, file-rss:1844kB, shmem-rss:0kB, UID:0 pgtables:220kB oom_score_adj:998", pid))
}

func startWithKernelLog(t *testing.T, log *kernelLogFile) (*scrapertest.Harness, *consumertest.LogsSink) {
	h := scrapertest.NewWith(t, func(cfg *scraper.Config) {
		cfg.KernelLog = scraper.KernelLogConfig{Enabled: true, Path: log.path}
	})
	sink := new(consumertest.LogsSink)
	h.Scraper.SetLogs(sink)
	h.Start()
	scraper.SetKernelBoot(h.Scraper, kernelBoot)
	return h, sink
}

// TestOOMKillRecordNamesTheVictim: with kernel_log, a kill record names the process the kernel
// killed in the container, and the limit the kernel names; a kill whose report lost its header
// says so; one with no report says that.
func TestOOMKillRecordNamesTheVictim(t *testing.T) {
	log := newKernelLogFile(t)
	h, sink := startWithKernelLog(t, log)
	hog := podtest.NewLife("hog", "OOMKilled", "OOMKilled", "OOMKilled")
	pod := podtest.NewPod("hog", "u1", hog.Running(0))
	h.Send(watch.Added, pod)
	h.At(11 * time.Second)
	h.Scrape()

	// Instance 0 ended at 30 s, killed by the pod's limit (the pod has none of its own).
	log.kill(podtest.T0.Add(29500*time.Millisecond), "/kubepods/burstable/podu1", "hog-0", 4242, false)
	h.At(31 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(0)))
	h.At(32 * time.Second)
	h.Scrape()
	got := scrapertest.Records(sink)
	require.Len(t, got, 1)
	attrs := got[0].Attributes().AsRaw()
	assert.Equal(t, "found", attrs["k8s.oom.kernel_report"])
	assert.Equal(t, int64(4242), attrs["process.pid"])
	assert.Equal(t, "workload", attrs["process.executable.name"])
	assert.Equal(t, "container", attrs["k8s.oom.scope"], "the pod's cgroup, whose limit is its containers'")

	// Instance 1, ended at 90 s: the report's header rate-limited away.
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(1)))
	log.kill(podtest.T0.Add(89500*time.Millisecond), "", "hog-1", 4300, true)
	h.At(91 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(1)))
	h.At(92 * time.Second)
	h.Scrape()
	got = scrapertest.Records(sink)
	require.Len(t, got, 1)
	attrs = got[0].Attributes().AsRaw()
	assert.Equal(t, "suppressed", attrs["k8s.oom.kernel_report"])
	assert.NotContains(t, attrs, "process.pid")
	assert.NotContains(t, attrs, "k8s.oom.scope")

	// Instance 2, ended at 150 s: no report at all.
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Running(2)))
	h.At(151 * time.Second)
	h.Send(watch.Modified, podtest.WithStatus(pod, hog.Terminated(2)))
	h.At(152 * time.Second)
	h.Scrape()
	got = scrapertest.Records(sink)
	require.Len(t, got, 1)
	assert.Equal(t, "not_found", got[0].Attributes().AsRaw()["k8s.oom.kernel_report"])
}
