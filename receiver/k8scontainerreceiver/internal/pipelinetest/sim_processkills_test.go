// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// The simulated process kills test drives this receiver, through the fake API server and its
// informer, and the oom_counter processor with the process OOM kills of a simulated node, read
// from the kubelet's /metrics/cadvisor or from a cgroup v1 tree (cgroupfs or systemd layout),
// and checks the exported k8s.container.process.oom_kills of every container against the truth
// after every batch the processor takes.
//
// The node runs a few pods, some of them static pods: their mirror pods carry another UID than
// the one /metrics/cadvisor and the cgroup tree know them by, and the kubelet deletes and
// creates them again (a new UID, the same running containers). Processes are OOM-killed inside
// living containers; containers restart (a new instance, its counter from 0, the old one gone);
// the kubelet restarts and cAdvisor counts again from 0; an instance is missing from the
// kubelet's answers, for a few scrapes or for longer than the receiver keeps a counter it does
// not read, the first complete reading included; a static pod's mirror pod stays away for a
// scrape or for many (the cgroup source then reads none of its containers), at the first
// complete reading too; the API server is slow to answer the initial pod list, for a few scrapes
// or many; the collector restarts, with its state in storage or without; batches are lost on the
// way to the processor.
//
// The truth of a container (its pod's UID as the runtime knows it and its name) is every kill
// the checker made. docs/counting.md says which of them a correct pipeline counts; the checker
// follows it reading by reading, as the receiver's counters stand:
//   - a kill before the first complete reading of the lineage (the collector's run, or runs
//     joined by storage) is history: counting it is a false alarm, and so is counting a kill
//     twice;
//   - a kill an instance's counter shows in a reading counts: its growth since the previous
//     reading of the instance, however long ago, as long as the receiver holds its counter (it
//     forgets it only when no pod shows the instance and it went unread for more than
//     simpkKeepScrapes scrapes: then the kills since its last reading may be missed);
//   - an instance read for the first time counts its whole value when the receiver holds the
//     counter of an earlier instance of its container; else its kills until that reading may be
//     missed (an instance the first complete reading did not read may have run long before);
//   - after a kubelet restart the counter counts its new value when it went down, its growth
//     over the old value when not: the kills between the last reading and the restart, and what
//     the growth cannot tell, may be missed;
//   - kills of an instance after its last reading and before it ended may be missed;
//   - kills read while the receiver shows no pod for them (the kubelet's counters of a pod the
//     pod list has not brought yet, or of a static pod whose mirror pod is gone) wait for a pod
//     that shows them, and count then; they may be missed if the collector stops before, or if a
//     batch was lost meanwhile (a deleted mirror pod that waits to report may have carried them);
//   - kills whose delta went out in a batch that was lost may be missed.
//
// So the exported count, summed over the mirror pods a static pod's container was reported
// under, is never more than the kills that count or may count, never less than those that
// count, and exactly these where nothing may be missed. Every series carries the UID of a pod
// the API server had: a regular pod's, or one of its static pod's mirror pods'.

var (
	simpkRuns = flag.Int("simpk.runs", 500, "how many seeded runs TestSimulatedProcessKills makes")
	simpkSeed = flag.Int64("simpk.seed", -1, "replay only this seed of TestSimulatedProcessKills, its event log printed")
)

// simpkRegressions are seeds that once failed, run whatever -simpk.runs says:
//   - 97: a static pod's container restarts and its mirror pod is deleted and created again
//     before the next scrape; the deleted mirror pod, waiting to report the restart, and the new
//     one both reported the kills of the scrape.
var simpkRegressions = []uint64{97}

const (
	// simpkSteps are the steps of a run: events, then a scrape if a collector runs.
	simpkSteps = 20
	// simpkWorkers is how many runs go at once: a run mostly waits for the informer.
	simpkWorkers = 8
	// simpkShownFailures is how many failing runs print their event log.
	simpkShownFailures = 3
	// simpkMinHits is how many of the default runs must hit each form.
	simpkMinHits = 5
	// simpkKeepScrapes is how many scrapes the receiver keeps a counter it did not read when no
	// pod shows its instance; simpkLongGap is the shortest of the longer gaps the draws make.
	simpkKeepScrapes = 6
	simpkLongGap     = simpkKeepScrapes + 1
)

// pkForm is a form of the node's, or of the world around the collector, that a run may hit.
type pkForm string

const (
	pkKubelet        pkForm = "kubelet source: /metrics/cadvisor"
	pkCgroup         pkForm = "cgroup source: cgroupfs layout"
	pkSystemd        pkForm = "cgroup source: systemd layout"
	pkStatic         pkForm = "static pod counted under the static UID"
	pkMirror         pkForm = "mirror pod re-created"
	pkSlowList       pkForm = "slow initial pod list"
	pkLower          pkForm = "counter dropped to a lower non-zero value"
	pkGap            pkForm = "counter missing from an answer and back"
	pkRestartStorage pkForm = "collector restart with storage"
	pkRestartBare    pkForm = "collector restart without storage"
	pkNewInstance    pkForm = "container restarted: a new instance counts whole"
	pkBatchLost      pkForm = "batch lost on the way to the processor"
	pkUnprimed       pkForm = "instance with history missing from the first complete reading"
	pkLongGap        pkForm = "counter unread for longer than the receiver keeps it unshown, back"
	pkWaited         pkForm = "kills read while no pod showed them, counted later"
)

var pkForms = []pkForm{
	pkKubelet, pkCgroup, pkSystemd, pkStatic, pkMirror, pkSlowList, pkLower, pkGap,
	pkRestartStorage, pkRestartBare, pkNewInstance, pkBatchLost, pkUnprimed, pkLongGap, pkWaited,
}

func TestSimulatedProcessKills(t *testing.T) {
	seeds := make(chan uint64)
	n := *simpkRuns
	if *simpkSeed >= 0 {
		n = 1
	}
	var (
		tally   = newSimTally[pkForm]()
		exact   atomic.Int32
		shown   atomic.Int32
		started = time.Now()
		wg      sync.WaitGroup
	)
	run := func(seed uint64) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			s := runProcessKillSim(t, seed)
			failed := ""
			if s.failure != nil {
				failed = s.failure.category
			}
			tally.add(seed, s.forms, failed)
			if s.failure == nil && s.mayMiss() == 0 {
				exact.Add(1)
			}
			switch {
			case s.failure == nil && *simpkSeed >= 0:
				t.Logf("seed %d passed:\n%s", seed, strings.Join(s.log, "\n"))
			case s.failure == nil:
			default:
				if shown.Add(1) <= simpkShownFailures || *simpkSeed >= 0 {
					t.Errorf("seed %d: %s: %s\nreplay: cd receiver/k8scontainerreceiver/internal/pipelinetest && go test -race -run 'TestSimulatedProcessKills' . -simpk.seed=%d\n%s",
						seed, s.failure.category, s.failure.detail, seed, strings.Join(s.log, "\n"))
				} else {
					t.Fail() // the summary names the seed
				}
			}
		})
	}
	// Runs go in goroutines of their own: the informer's waits, not the processors, bound a run.
	for range min(simpkWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				run(seed)
			}
		}()
	}
	if *simpkSeed >= 0 {
		seeds <- uint64(*simpkSeed)
	} else {
		for i := range n {
			seeds <- uint64(i)
		}
		for _, seed := range simpkRegressions {
			if seed >= uint64(n) {
				seeds <- seed
			}
		}
	}
	close(seeds)
	wg.Wait()

	t.Logf("%d simulated runs in %s, %d of them exact (nothing could be missed)", n, time.Since(started).Round(time.Millisecond), exact.Load())
	tally.report(t, n, pkForms, simpkMinHits, *simpkSeed < 0 && n >= 500)
}

// ---- the node ---------------------------------------------------------------------------------

type pkPod struct {
	name string
	// uid is the pod's UID as the runtime knows it: a regular pod's own, a static pod's hash.
	uid    string
	static bool
	// mirror is the UID of the static pod's mirror pod, "" while there is none; mirrors are all
	// its mirror pods' UIDs so far.
	mirror  string
	mirrors []string
	// absent is how many scrapes more the mirror pod stays away.
	absent     int
	containers []*pkContainer
}

// apiUID is the UID the API server shows the pod under, "" while it shows none.
func (p *pkPod) apiUID() string {
	if p.static {
		return p.mirror
	}
	return p.uid
}

type pkContainer struct {
	pod  *pkPod
	life podtest.Life
	run  int
	inst *pkInstance
	// must are the kills a correct pipeline must have counted so far; may those it may have
	// counted on top; history the kills it must not count.
	must, may, history int64
	// prev is the latest earlier instance the lineage read, nil if none.
	prev *pkInstance
	// waiting are kills read while no pod showed them, counted in may until a pod shows them;
	// waitSafe tells that no batch was lost since they wait.
	waiting  int64
	waitSafe bool
}

type pkInstance struct {
	id string
	// kernel is the kernel's count, cadvisor the kubelet's: it starts again at the kubelet's
	// restart.
	kernel, cadvisor int64
	// before and after are the kills since the last reading, before the latest kubelet restart
	// since then and after it; reset tells that the kubelet restarted since the last reading.
	before, after int64
	reset         bool
	// known tells that the receiver's counters hold the instance: last is its value as read, at
	// the lineage's scrape lastRead.
	known    bool
	last     int64
	lastRead int
	// held tells that the receiver surely still holds the counter it read.
	held bool
	// unprimed tells that the lineage's first complete reading did not read the instance; hist
	// are its kills until then, history.
	unprimed bool
	hist     int64
	// gap is how many more answers of the kubelet leave the instance out.
	gap int
	// gapped tells that the instance was left out of an answer since its last reading.
	gapped bool
}

// ---- the run ----------------------------------------------------------------------------------

type pkFailure struct{ category, detail string }

type pkSim struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	log  []string
	step int

	kubelet    bool
	systemd    bool
	persistent bool
	cgroupRoot string

	pods       []*pkPod
	containers map[string]*pkContainer

	// The collector.
	h       *scrapertest.Harness
	host    pkHost
	proc    processor.Metrics
	sink    *consumertest.MetricsSink
	running bool
	// listed tells that the running receiver's initial pod list arrived; held is how many more
	// scrapes it waits. While gate is not nil, pod lists wait until it is closed: one reactor
	// holds them, put in before any informer lists (the fake clientset's reactors must not
	// change while one does).
	listed bool
	held   int
	gateMu sync.Mutex
	gate   chan struct{}
	// primed tells that the lineage took a complete reading; scrape numbers the running
	// receiver's scrapes.
	primed   bool
	scrape   int
	restarts int

	// The exported counts: the latest value of each series, by pod UID, container and start.
	series   map[pkSeries]int64
	consumed int
	forms    map[pkForm]bool
	failure  *pkFailure
}

type pkSeries struct {
	uid, container string
	start          pcommon.Timestamp
}

func runProcessKillSim(t *testing.T, seed uint64) *pkSim {
	rng := rand.New(rand.NewPCG(seed, 0x706b696c6c73))
	s := &pkSim{
		t:          t,
		seed:       seed,
		rng:        rng,
		kubelet:    rng.IntN(2) == 0,
		persistent: rng.IntN(2) == 0,
		containers: map[string]*pkContainer{},
		series:     map[pkSeries]int64{},
		forms:      map[pkForm]bool{},
	}
	if s.kubelet {
		s.hit(pkKubelet)
	} else {
		s.systemd = rng.IntN(3) == 0
		if s.systemd {
			s.hit(pkSystemd)
		} else {
			s.hit(pkCgroup)
		}
		s.cgroupRoot = t.TempDir()
		s.mkdir(filepath.Join(s.cgroupRoot, "memory"))
		s.writeFile(filepath.Join(s.cgroupRoot, "memory", "memory.oom_control"), "oom_kill 0\n")
		// The kubelet made its kubepods cgroups when it started.
		for _, dir := range s.qosDirs() {
			s.mkdir(dir)
		}
	}
	s.logf("seed %d: source=%s systemd=%v storage=%v", seed, map[bool]string{true: "kubelet", false: "cgroup"}[s.kubelet], s.systemd, s.persistent)

	for i := range 2 + rng.IntN(3) {
		p := &pkPod{name: fmt.Sprintf("pod%d", i), static: rng.IntN(2) == 0}
		if p.static {
			p.uid = fmt.Sprintf("5a71c%027x", seed*16+uint64(i))
			p.mirror = p.newMirrorUID()
		} else {
			p.uid = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, seed)
		}
		for j := range 1 + rng.IntN(2) {
			name := fmt.Sprintf("p%dc%d", i, j)
			reasons := make([]string, 64)
			for k := range reasons {
				reasons[k] = "Error"
			}
			c := &pkContainer{pod: p, life: podtest.NewLife(name, reasons...), run: rng.IntN(3)}
			c.inst = &pkInstance{id: c.instanceID()}
			// What the containers went through before the collector started is history.
			c.inst.kernel = int64(rng.IntN(6))
			c.inst.cadvisor = c.inst.kernel
			if rng.IntN(4) == 0 {
				c.inst.cadvisor = int64(rng.IntN(int(c.inst.kernel) + 1))
			}
			c.inst.after = c.inst.cadvisor
			c.inst.before = c.inst.kernel - c.inst.cadvisor
			s.writeCounter(c)
			p.containers = append(p.containers, c)
			s.containers[name] = c
		}
		s.pods = append(s.pods, p)
		s.logf("  %s uid=%s static=%v mirror=%s containers=%s", p.name, p.uid, p.static, p.mirror, p.describe())
	}

	s.startCollector(rng.IntN(3) == 0)
	for s.step = 1; s.step <= simpkSteps && s.failure == nil; s.step++ {
		s.act()
	}
	if s.failure == nil {
		s.finish()
	}
	if s.running {
		s.stopCollector()
	}
	return s
}

// mayMiss is how many kills the pipeline may have missed.
func (s *pkSim) mayMiss() int64 {
	n := int64(0)
	for _, c := range s.containers {
		n += c.may
	}
	return n
}

func (p *pkPod) newMirrorUID() string {
	uid := fmt.Sprintf("m%d-%s-%s", len(p.mirrors), p.name, p.uid[len(p.uid)-6:])
	p.mirrors = append(p.mirrors, uid)
	return uid
}

func (p *pkPod) describe() string {
	var names []string
	for _, c := range p.containers {
		names = append(names, fmt.Sprintf("%s@%d(kernel %d, cadvisor %d)", c.life.Name, c.run, c.inst.kernel, c.inst.cadvisor))
	}
	return strings.Join(names, ",")
}

func (c *pkContainer) instanceID() string { return fmt.Sprintf("%s-%d", c.life.Name, c.run) }

func (s *pkSim) hit(f pkForm) { s.forms[f] = true }

func (s *pkSim) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf("%3d ", s.step)+fmt.Sprintf(format, args...))
}

func (s *pkSim) fail(category, format string, args ...any) {
	if s.failure == nil {
		s.failure = &pkFailure{category: category, detail: fmt.Sprintf(format, args...)}
		s.logf("FAIL %s: %s", category, s.failure.detail)
	}
}

// act makes a step: a few events, then a scrape when a collector runs.
func (s *pkSim) act() {
	s.h.At(time.Duration(s.step) * time.Second)
	for range s.rng.IntN(4) {
		switch r := s.rng.IntN(100); {
		case r < 45:
			s.kill()
		case r < 57:
			s.restartContainer()
		case r < 65 && s.kubelet:
			s.restartKubelet()
		case r < 73 && s.kubelet:
			s.leaveOut()
		case r < 85:
			s.recreateMirror()
		case r < 90 && s.running && s.restarts < 2 && s.step < simpkSteps-4:
			s.stopCollector()
		}
	}
	if !s.running && s.rng.IntN(2) == 0 {
		s.startCollector(s.rng.IntN(3) == 0)
	}
	if s.running {
		s.scrapeOnce(s.rng.IntN(20) == 0)
	}
}

// finish brings everything to light: a collector runs with its pod list, every mirror pod is
// back, every counter in the kubelet's answers; two quiet scrapes read them all.
func (s *pkSim) finish() {
	s.step++
	s.h.At(time.Duration(s.step) * time.Second)
	s.logf("finish")
	if !s.running {
		s.startCollector(false)
	}
	if !s.listed {
		s.releaseList()
	}
	for _, p := range s.pods {
		if p.static && p.mirror == "" {
			p.absent = 0
			s.createMirror(p)
		}
		for _, c := range p.containers {
			c.inst.gap = 0
		}
	}
	for range 2 {
		if s.failure != nil {
			return
		}
		s.scrapeOnce(false)
		s.step++
		s.h.At(time.Duration(s.step) * time.Second)
	}
}

func (s *pkSim) pickContainer() *pkContainer {
	names := make([]string, 0, len(s.containers))
	for n := range s.containers {
		names = append(names, n)
	}
	sort.Strings(names)
	return s.containers[names[s.rng.IntN(len(names))]]
}

func (s *pkSim) kill() {
	c := s.pickContainer()
	n := int64(1 + s.rng.IntN(3))
	c.inst.kernel += n
	c.inst.cadvisor += n
	c.inst.after += n
	s.writeCounter(c)
	s.logf("%s: %d process kills in %s (kernel %d, cadvisor %d)", c.pod.name, n, c.inst.id, c.inst.kernel, c.inst.cadvisor)
}

// restartContainer ends the container's instance and starts the next: a new cgroup, a counter
// from 0. The kills the old one's counter showed after its last reading are lost.
func (s *pkSim) restartContainer() {
	c := s.pickContainer()
	old := c.inst
	s.settleEnded(c, old)
	if old.known {
		c.prev = old
	}
	s.removeCgroup(c)
	c.run++
	c.inst = &pkInstance{id: c.instanceID()}
	s.writeCounter(c)
	s.logf("%s: %s ended, %s runs", c.pod.name, old.id, c.inst.id)
	s.writePod(c.pod, watch.Modified)
}

// settleEnded sorts the kills an ended instance's counter showed after its last reading: they
// may be missed, or are history when no reading of the lineage would have counted them.
func (s *pkSim) settleEnded(c *pkContainer, in *pkInstance) {
	unread := in.before + in.after
	if unread == 0 {
		return
	}
	if in.known || s.primed {
		c.may += unread
		s.logf("  %s: %d kills never read: may be missed", in.id, unread)
	} else {
		c.history += unread
		s.logf("  %s: %d kills never read: history", in.id, unread)
	}
	in.before, in.after = 0, 0
}

// restartKubelet makes cAdvisor count again from 0.
func (s *pkSim) restartKubelet() {
	s.logf("kubelet restarted: cAdvisor counts from 0")
	for _, c := range s.containers {
		c.inst.before += c.inst.after
		c.inst.after = 0
		c.inst.cadvisor = 0
		c.inst.reset = true
	}
}

// leaveOut makes the kubelet leave an instance out of its next answers.
func (s *pkSim) leaveOut() {
	c := s.pickContainer()
	c.inst.gap = s.gapLength(1)
	s.logf("%s: the kubelet leaves %s out of its next %d answers", c.pod.name, c.inst.id, c.inst.gap)
}

// gapLength draws how many scrapes something stays away: from least to two more, or, one time
// in four, longer than the receiver keeps a counter it does not read.
func (s *pkSim) gapLength(least int) int {
	if s.rng.IntN(4) == 0 {
		return simpkLongGap + s.rng.IntN(3)
	}
	return least + s.rng.IntN(3)
}

// recreateMirror deletes a static pod's mirror pod; the kubelet creates it again now or after a
// scrape or two.
func (s *pkSim) recreateMirror() {
	var static []*pkPod
	for _, p := range s.pods {
		if p.static && p.mirror != "" {
			static = append(static, p)
		}
	}
	if len(static) == 0 {
		return
	}
	p := static[s.rng.IntN(len(static))]
	s.writePod(p, watch.Deleted)
	s.logf("%s: mirror pod %s deleted", p.name, p.mirror)
	p.mirror = ""
	p.absent = s.gapLength(0)
	if p.absent == 0 {
		s.createMirror(p)
	}
}

func (s *pkSim) createMirror(p *pkPod) {
	p.mirror = p.newMirrorUID()
	s.logf("%s: mirror pod %s created", p.name, p.mirror)
	s.writePod(p, watch.Added)
	if s.running {
		s.hit(pkMirror)
	}
}

// podObject is the pod as the API server shows it.
func (s *pkSim) podObject(p *pkPod) *corev1.Pod {
	statuses := make([]corev1.ContainerStatus, 0, len(p.containers))
	for _, c := range p.containers {
		statuses = append(statuses, c.life.Running(c.run))
	}
	pod := podtest.NewPod(p.name, p.apiUID(), statuses...)
	if p.static {
		pod = podtest.Mirror(pod, p.uid)
	}
	return pod
}

// writePod writes the pod to the API server; the informer sees it if it watches.
func (s *pkSim) writePod(p *pkPod, kind watch.EventType) {
	if p.apiUID() == "" {
		return // no mirror pod to write the status to
	}
	pod := s.podObject(p)
	if s.running && s.listed {
		s.h.Send(kind, pod)
	} else {
		s.h.Store(kind, pod)
	}
}

// ---- the cgroup tree and the kubelet's answer -------------------------------------------------

func (s *pkSim) mkdir(dir string) { require.NoError(s.t, os.MkdirAll(dir, 0o755)) }

func (s *pkSim) writeFile(path, body string) {
	require.NoError(s.t, os.WriteFile(path, []byte(body), 0o644))
}

func (s *pkSim) qosDirs() []string {
	base := filepath.Join(s.cgroupRoot, "memory")
	if s.systemd {
		return []string{filepath.Join(base, "kubepods.slice", "kubepods-burstable.slice")}
	}
	return []string{filepath.Join(base, "kubepods", "burstable")}
}

// cgroupDir is the cgroup of the container's instance.
func (s *pkSim) cgroupDir(c *pkContainer) string {
	qos := s.qosDirs()[0]
	if s.systemd {
		return filepath.Join(qos, "kubepods-burstable-pod"+strings.ReplaceAll(c.pod.uid, "-", "_")+".slice", "cri-containerd-"+c.inst.id+".scope")
	}
	return filepath.Join(qos, "pod"+c.pod.uid, c.inst.id)
}

func (s *pkSim) writeCounter(c *pkContainer) {
	if s.kubelet {
		return
	}
	dir := s.cgroupDir(c)
	s.mkdir(dir)
	s.writeFile(filepath.Join(dir, "memory.oom_control"), fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", c.inst.kernel))
}

func (s *pkSim) removeCgroup(c *pkContainer) {
	if !s.kubelet {
		require.NoError(s.t, os.RemoveAll(s.cgroupDir(c)))
	}
}

// cadvisor is the kubelet's answer on /metrics/cadvisor: every running instance but those it
// leaves out, static pods' under the static pod's UID.
func (s *pkSim) cadvisor() string {
	var counters []scrapertest.CadvisorCounter
	for _, p := range s.pods {
		for _, c := range p.containers {
			if c.inst.gap > 0 {
				continue
			}
			counters = append(counters, scrapertest.CadvisorCounter{Pod: p.name, UID: p.uid, Container: c.life.Name, ID: c.inst.id, Value: int(c.inst.cadvisor)})
		}
	}
	return scrapertest.Cadvisor(counters...)
}

// ---- the collector ----------------------------------------------------------------------------

var pkStorageID = component.MustNewID("pkstate")

func (s *pkSim) receiverConfig(cfg *k8scontainerreceiver.Config) {
	if !s.kubelet {
		cfg.ProcessOOMKills = k8scontainerreceiver.ProcessOOMKillsConfig{Source: k8scontainerreceiver.ProcessSourceCgroup, CgroupRoot: s.cgroupRoot}
	}
	if s.persistent {
		id := pkStorageID
		cfg.Storage = &id
	}
}

// livePods are the pods the API server shows.
func (s *pkSim) livePods() int {
	n := 0
	for _, p := range s.pods {
		if p.apiUID() != "" {
			n++
		}
	}
	return n
}

// startCollector starts a receiver and a processor, the receiver's initial pod list held for a
// scrape or more when slow.
func (s *pkSim) startCollector(slow bool) {
	first := s.h == nil
	if first {
		s.h = scrapertest.NewWith(s.t, s.receiverConfig)
		s.h.Client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			s.gateMu.Lock()
			gate := s.gate
			s.gateMu.Unlock()
			if gate != nil {
				<-gate
			}
			return false, nil, nil
		})
		s.host = pkHost{ext: map[component.ID]component.Component{pkStorageID: &pkStorage{data: map[string][]byte{}}}}
		s.h.Host = s.host
		s.sink = new(consumertest.MetricsSink)
		for _, p := range s.pods {
			if p.apiUID() != "" {
				s.h.Store(watch.Added, s.podObject(p))
			}
		}
	} else {
		sc, err := scraper.New(s.h.Settings(), s.h.Config, s.h.Deps())
		require.NoError(s.t, err)
		s.h.Use(sc)
		s.restarts++
		if s.persistent {
			s.hit(pkRestartStorage)
		} else {
			s.hit(pkRestartBare)
		}
	}
	f := oomcounterprocessor.NewFactory()
	cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
	if s.persistent {
		id := pkStorageID
		cfg.Storage = &id
	}
	proc, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(f.Type()), cfg, s.sink)
	require.NoError(s.t, err)
	require.NoError(s.t, proc.Start(context.Background(), s.host))
	s.proc = proc
	s.running = true
	s.scrape = 0
	for _, c := range s.containers {
		c.inst.lastRead = 0
		if c.prev != nil {
			c.prev.lastRead = 0
		}
	}
	if slow {
		s.held = s.gapLength(1)
		s.gateMu.Lock()
		s.gate = make(chan struct{})
		s.gateMu.Unlock()
		s.listed = false
		s.h.StartListing()
		// Before StartListing's shutdown, should the run end early.
		s.t.Cleanup(s.openGate)
		s.logf("collector started (storage=%v), its pod list held for %d scrapes", s.persistent, s.held)
		return
	}
	s.h.Start()
	s.h.WaitHandled(int64(s.livePods()))
	s.listed = true
	s.logf("collector started (storage=%v)", s.persistent)
}

func (s *pkSim) openGate() {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

func (s *pkSim) releaseList() {
	n := s.h.Watchers()
	s.openGate()
	s.h.WaitWatchers(n + 1)
	s.h.WaitHandled(int64(s.livePods()))
	s.listed = true
	s.logf("the pod list arrived")
}

// stopCollector shuts the collector down. Without storage the next one knows nothing: what its
// first reading shows is history.
func (s *pkSim) stopCollector() {
	s.openGate()
	require.NoError(s.t, s.h.Scraper.Shutdown(context.Background()))
	require.NoError(s.t, s.proc.Shutdown(context.Background()))
	s.running, s.listed = false, false
	for _, c := range s.containers {
		if c.waiting > 0 {
			s.logf("  %s: %d kills waiting for a pod lost: may be missed", c.life.Name, c.waiting)
			c.waiting = 0
		}
	}
	if !s.persistent {
		s.primed = false
		for _, c := range s.containers {
			c.inst.known, c.inst.held = false, false
			c.prev = nil
		}
	}
	s.logf("collector stopped")
}

// scrapeOnce scrapes, hands the batch to the processor unless it is lost, and checks.
func (s *pkSim) scrapeOnce(lose bool) {
	if !s.listed && s.held == 0 {
		s.releaseList()
	}
	if !s.listed {
		s.hit(pkSlowList)
		s.held--
	}
	for _, p := range s.pods {
		if p.static && p.mirror == "" {
			if p.absent <= 0 {
				s.createMirror(p)
			}
			p.absent--
		}
	}
	if s.kubelet {
		s.h.Kubelet.SetCadvisor(s.cadvisor())
	}
	counted := s.read()
	md := s.h.Scrape()
	if lose {
		s.hit(pkBatchLost)
	}
	for _, c := range sortedContainers(counted) {
		n := counted[c]
		shown := s.listed && c.pod.apiUID() != ""
		switch {
		case n[0]+n[1] == 0:
		case !shown:
			// They wait for a pod that shows them (see below); n[1] may be missed anyway.
			if c.waiting == 0 {
				c.waitSafe = true
			}
			c.waiting += n[0]
			c.may += n[0] + n[1]
			s.logf("  %s: %d kills counted while no pod shows them: they wait (%d waiting)", c.life.Name, n[0]+n[1], c.waiting)
		case lose:
			c.may += n[0] + n[1]
			s.logf("  %s: %d kills counted, may be missed (batch lost)", c.life.Name, n[0]+n[1])
		default:
			c.must += n[0]
			c.may += n[1]
			s.logf("  %s: %d kills must count, %d may (must %d may %d history %d)", c.life.Name, n[0], n[1], c.must, c.may, c.history)
			if n[0] > 0 && c.pod.static {
				s.hit(pkStatic)
			}
		}
	}
	for _, c := range sortedContainers(s.waitingKills()) {
		shown := s.listed && c.pod.apiUID() != ""
		switch {
		case shown && !lose && c.waitSafe:
			c.may -= c.waiting
			c.must += c.waiting
			s.hit(pkWaited)
			s.logf("  %s: %d waiting kills must count now (must %d may %d history %d)", c.life.Name, c.waiting, c.must, c.may, c.history)
			c.waiting = 0
		case shown:
			s.logf("  %s: %d waiting kills handed on, may be missed (batch lost %v, one lost while they waited %v)", c.life.Name, c.waiting, lose, !c.waitSafe)
			c.waiting = 0
		case lose:
			c.waitSafe = false
		}
	}
	s.scrape++
	s.logf("scrape %d%s", s.scrape-1, map[bool]string{true: ", batch lost"}[lose])
	if lose {
		return
	}
	require.NoError(s.t, s.proc.ConsumeMetrics(context.Background(), md))
	s.check()
}

// read takes the reading the receiver takes, as docs/counting.md counts it: per container the
// kills that must count and those that may.
func (s *pkSim) read() map[*pkContainer][2]int64 {
	complete := s.kubelet || s.listed
	counted := map[*pkContainer][2]int64{}
	for _, c := range s.containers {
		in := c.inst
		if s.kubelet && in.gap > 0 {
			in.gap--
			in.gapped = true
			continue
		}
		// The cgroup source reads the instances of the pods the receiver shows.
		if !s.kubelet && (!s.listed || c.pod.apiUID() == "") {
			continue
		}
		v := in.kernel
		if s.kubelet {
			v = in.cadvisor
		}
		var must, may int64
		unread := s.scrape - in.lastRead
		switch {
		case in.known && !in.held:
			// The receiver forgot its counter: the kills since its last reading may be missed,
			// the earlier ones were counted.
			must, may = 0, in.before+in.after
			if in.last > 0 {
				s.hit(pkLongGap)
			}
		case in.known && in.reset && v < in.last:
			// Went down: its new value counts.
			must, may = v, in.before
			if v > 0 {
				s.hit(pkLower)
			}
		case in.known && in.reset:
			must, may = v-in.last, in.before+in.last
		case in.known:
			must = v - in.last
			if in.gapped && must > 0 {
				s.hit(pkGap)
			}
			if unread > simpkKeepScrapes && in.last > 0 {
				s.hit(pkLongGap)
			}
		case s.primed && c.prev != nil && c.prev.held:
			// New since the reading of an instance before it: its whole count.
			must, may = v, in.before
			if v > 0 {
				s.hit(pkNewInstance)
			}
		case s.primed:
			// Maybe there before the first complete reading: a baseline.
			must, may = 0, in.before+in.after
			if in.unprimed && in.hist > 0 && v > in.before+in.after {
				s.hit(pkUnprimed)
			}
		default:
			c.history += in.before + in.after
		}
		if must+may != in.before+in.after && (in.known || s.primed) {
			s.fail("checker", "%s: %d+%d kills counted of %d read", in.id, must, may, in.before+in.after)
		}
		in.before, in.after, in.reset, in.gapped = 0, 0, false, false
		in.known, in.held, in.last, in.lastRead = true, true, v, s.scrape
		if must+may > 0 {
			counted[c] = [2]int64{must, may}
		}
	}
	if !s.primed && complete {
		// The kills so far of an instance the first complete reading did not read are history.
		for _, c := range s.containers {
			if in := c.inst; !in.known {
				in.unprimed, in.hist = true, in.before+in.after
				c.history += in.hist
				in.before, in.after = 0, 0
				s.logf("  %s: not read by the first complete reading, %d kills history", in.id, in.hist)
			}
		}
	}
	s.primed = s.primed || complete
	if s.listed {
		// The receiver forgets a counter unread for longer than it keeps one no pod shows.
		for _, c := range s.containers {
			for _, in := range []*pkInstance{c.inst, c.prev} {
				shown := in == c.inst && c.pod.apiUID() != ""
				if in != nil && in.held && s.scrape-in.lastRead > simpkKeepScrapes && !shown {
					in.held = false
					s.logf("  %s: unread for %d scrapes, no pod shows it: forgotten", in.id, s.scrape-in.lastRead)
				}
			}
		}
	}
	return counted
}

// waitingKills are the containers whose kills wait for a pod.
func (s *pkSim) waitingKills() map[*pkContainer][2]int64 {
	m := map[*pkContainer][2]int64{}
	for _, c := range s.containers {
		if c.waiting > 0 {
			m[c] = [2]int64{c.waiting}
		}
	}
	return m
}

func sortedContainers(m map[*pkContainer][2]int64) []*pkContainer {
	out := make([]*pkContainer, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].life.Name < out[j].life.Name })
	return out
}

// check reads the batches the processor exported since the last check and compares each
// container's count with what must and may count.
func (s *pkSim) check() {
	all := s.sink.AllMetrics()
	for _, md := range all[s.consumed:] {
		rms := md.ResourceMetrics()
		for i := range rms.Len() {
			attrs := rms.At(i).Resource().Attributes()
			uid, _ := attrs.Get("k8s.pod.uid")
			name, _ := attrs.Get("k8s.container.name")
			sms := rms.At(i).ScopeMetrics()
			for j := range sms.Len() {
				ms := sms.At(j).Metrics()
				for k := range ms.Len() {
					m := ms.At(k)
					if m.Name() != "k8s.container.process.oom_kills" {
						continue
					}
					if m.Type() != pmetric.MetricTypeSum || m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
						s.fail("not a cumulative sum", "%s/%s", uid.Str(), name.Str())
						return
					}
					s.checkUID(uid.Str(), name.Str())
					dps := m.Sum().DataPoints()
					for d := range dps.Len() {
						dp := dps.At(d)
						s.series[pkSeries{uid.Str(), name.Str(), dp.StartTimestamp()}] = dp.IntValue()
					}
				}
			}
		}
	}
	s.consumed = len(all)
	exported := map[string]int64{}
	for k, v := range s.series {
		exported[k.container] += v
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range s.containers {
			if !yield(n) {
				return
			}
		}
	}) {
		c := s.containers[name]
		got := exported[name]
		switch {
		case got > c.must+c.may:
			s.fail("counted more than the kills that count", "%s: exported %d, must %d, may %d more (history %d)", name, got, c.must, c.may, c.history)
		case got < c.must:
			s.fail("counted fewer than the kills that must count", "%s: exported %d, must %d, may %d more (history %d)", name, got, c.must, c.may, c.history)
		}
	}
}

// checkUID fails a series on a pod UID the API server never showed for the container's pod: a
// static pod's own UID, another pod's.
func (s *pkSim) checkUID(uid, name string) {
	c := s.containers[name]
	switch {
	case c == nil:
		s.fail("series of no container", "%s/%s", uid, name)
	case c.pod.static && uid == c.pod.uid:
		s.fail("static pod's UID on a series", "%s/%s: the static pod's own UID, not a mirror pod's", uid, name)
	case c.pod.static && !slices.Contains(c.pod.mirrors, uid):
		s.fail("series on a pod UID the API server never showed", "%s/%s: not one of %v", uid, name, c.pod.mirrors)
	case !c.pod.static && uid != c.pod.uid:
		s.fail("series on a pod UID the API server never showed", "%s/%s: the pod is %s", uid, name, c.pod.uid)
	}
}

// ---- storage ----------------------------------------------------------------------------------

// pkStorage is a storage extension in memory that outlives the collectors of a run.
type pkStorage struct {
	mu   sync.Mutex
	data map[string][]byte
}

func (*pkStorage) Start(context.Context, component.Host) error { return nil }
func (*pkStorage) Shutdown(context.Context) error              { return nil }

func (p *pkStorage) GetClient(_ context.Context, kind component.Kind, id component.ID, name string) (storage.Client, error) {
	return pkStorageClient{p, fmt.Sprintf("%s/%s/%s/", kind, id, name)}, nil
}

type pkStorageClient struct {
	s      *pkStorage
	prefix string
}

func (c pkStorageClient) Get(ctx context.Context, key string) ([]byte, error) {
	op := storage.GetOperation(key)
	err := c.Batch(ctx, op)
	return op.Value, err
}

func (c pkStorageClient) Set(ctx context.Context, key string, value []byte) error {
	return c.Batch(ctx, storage.SetOperation(key, value))
}

func (c pkStorageClient) Delete(ctx context.Context, key string) error {
	return c.Batch(ctx, storage.DeleteOperation(key))
}

func (c pkStorageClient) Batch(_ context.Context, ops ...*storage.Operation) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for _, op := range ops {
		switch op.Type {
		case storage.Get:
			op.Value = slices.Clone(c.s.data[c.prefix+op.Key])
		case storage.Set:
			c.s.data[c.prefix+op.Key] = slices.Clone(op.Value)
		case storage.Delete:
			delete(c.s.data, c.prefix+op.Key)
		}
	}
	return nil
}

func (pkStorageClient) Close(context.Context) error { return nil }

type pkHost struct {
	ext map[component.ID]component.Component
}

func (h pkHost) GetExtensions() map[component.ID]component.Component { return h.ext }
