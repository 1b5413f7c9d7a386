// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

// The simulated kubelet test drives this receiver and the oom_counter processor together with
// the container lifecycles of a simulated node, and checks the exported count of every
// container against the truth after every batch the processor takes.
//
// The node runs a few pods: restartPolicy Always, OnFailure or Never, some with an init
// container. Containers start, are OOM-killed, exit with an error or complete, are marked
// OOMKilled though PID 1 exited by itself after a child's kill, wait in back-off, restart; the
// runtime loses a pod's containers, by a node reboot or while the kubelet runs, and the kubelet
// writes its default status until the next container shows whether the container logs went
// (restart counts from 0) or stayed (the count goes on); the status manager ends pods
// (TerminatePod: made-up ends, over running instances sometimes an OOM kill nobody saw); pods
// are deleted and re-created under the same name; a static pod's mirror pod is deleted and the
// kubelet creates it again. The kubelet writes the statuses a real one writes, but
// merges some writes; the watch breaks and the informer relists; scrapes come at random times;
// batches are lost, duplicated or late; the collector restarts, with its processor state in
// storage (after a clean shutdown or a crash) or without it. Each run draws its gap_policy.
//
// The truth of a container is every OOM kill after its history horizon: the kills the status
// showed, or could have shown, when the collector that began the current series first listed
// the pods are history; a container of a pod created later has none. The checker knows which
// kills the receiver could see, which points it emitted and which of them the processor
// accepted, and it follows the counting rule to know which instances the processor took as
// unattributed. So it can tell, per container, which kills a correct pipeline must count:
//   - never more than the truth, plus under upper_bound each unattributed instance that was no
//     OOM kill of the truth;
//   - never less than the kills that must count: all of them, except kills no status the
//     receiver observed showed, kills whose points were all lost on the way (a batch dropped or
//     late, a receiver that stopped before its next scrape), and kills the processor had to take
//     as history because the batch with the first sight of the container was lost; under
//     upper_bound a kill that ended unseen must count when the processor took its instance as
//     unattributed, and so must every other unattributed instance. Where nothing was lost the
//     count is exact;
//   - within one StartTimestamp the count never decreases, and a new StartTimestamp appears only
//     when the processor state was lost.

var (
	simRuns = flag.Int("sim.runs", 3000, "how many seeded runs TestSimulatedKubelet makes")
	simSeed = flag.Int64("sim.seed", -1, "replay only this seed of TestSimulatedKubelet")
	simLog  = flag.Bool("sim.log", false, "print the event log of every TestSimulatedKubelet run")
)

const (
	// simHistorySteps run before the collector first starts: the pods have a past.
	simHistorySteps = 8
	simSteps        = 50
	// Every simWatchEvery-th run delivers through the fake clientset's watch and relists with
	// 410 Gone, the informer path; the others call the informer's handlers directly.
	simWatchEvery = 100
	// simShownFailures is how many failing runs print their event log.
	simShownFailures = 3
	// simMinHits is how many of the default runs must hit each form, so that a change of the
	// draws cannot quietly stop testing one.
	simMinHits = 5
)

// simForm is a form of the kubelet's, or of the world around it, that a run may hit.
type simForm string

const (
	formLogsWiped        simForm = "node reboot, logs gone: the next container counts from 0"
	formLogsKept         simForm = "runtime lost the containers, logs kept: the next container goes on"
	formRuntimeLost      simForm = "runtime lost the containers while the kubelet ran"
	formLostRunningAlone simForm = "default status of a lost running container without lastState: made-up end, restart count +1"
	formEndedRunning     simForm = "TerminatePod over a running container: outcome unknown"
	formEndedRunningOOM  simForm = "TerminatePod over a running container the OOM killer had ended"
	formEndedBackOff     simForm = "TerminatePod over a container in back-off: no instance ended"
	formEndedWaiting     simForm = "TerminatePod over a container with no container running"
	formChildKill        simForm = "OOMKilled with PID 1's own exit code: a child's kill, no container kill"
	formMirrorRecreated  simForm = "a static pod's mirror pod deleted and created again: its first status is history"
	formClockBehind      simForm = "node clock behind the collector's: an end shows in the second before"
	formClockAhead       simForm = "node clock ahead of the collector's, by under a second"
)

// simForms are the forms the runs must hit, in the order the summary lists them.
//
// The slow initial pod list and static pods' counters under the static pod's UID in
// /metrics/cadvisor and the cgroup tree are process kill forms: TestSimulatedProcessKills
// draws them. SystemOOM events are drawn only in the runs through the informer: the scraper has
// no other way in.
var simForms = []simForm{
	formLogsWiped, formLogsKept, formRuntimeLost, formLostRunningAlone,
	formEndedRunning, formEndedRunningOOM, formEndedBackOff, formEndedWaiting, formChildKill, formMirrorRecreated,
	formClockBehind, formClockAhead,
	formSysNew, formSysAggregated, formSysExpired, formSysRecreated, formSysRelisted,
}

func TestSimulatedKubelet(t *testing.T) {
	seeds := make([]uint64, 0, *simRuns)
	if *simSeed >= 0 {
		seeds = append(seeds, uint64(*simSeed))
	} else {
		for i := range *simRuns {
			seeds = append(seeds, uint64(i))
		}
	}
	var (
		tally   = newSimTally[simForm]()
		shown   atomic.Int32
		started = time.Now()
	)
	t.Run("run", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				s := runSimulation(t, seed)
				failed := ""
				if s.failure != nil {
					failed = s.failure.category
				}
				tally.add(seed, s.forms, failed)
				if s.failure == nil && !*simLog {
					return
				}
				if s.failure == nil {
					t.Logf("seed %d passed:\n%s", seed, s.describe())
					return
				}
				if shown.Add(1) <= simShownFailures || *simLog || *simSeed >= 0 {
					t.Errorf("seed %d: %s\nreplay: cd receiver/k8scontainerreceiver/internal/pipelinetest && go test -race -run 'TestSimulatedKubelet' . -sim.seed=%d\n%s",
						seed, s.failure, seed, s.describe())
				} else {
					// The summary below names the seed.
					t.Fail()
				}
			})
		}
	})
	t.Logf("%d simulated runs in %s", len(seeds), time.Since(started).Round(time.Millisecond))
	tally.report(t, len(seeds), simForms, simMinHits, *simSeed < 0 && *simRuns >= 3000)
}

// ---- the simulation --------------------------------------------------------------------------

type simulation struct {
	// lookedAt is the step of the latest scrape of a receiver with storage in this lineage: the
	// receiver records it as when it last looked. genLookedAt is its value when the running
	// receiver started. lookedAtStart tells that it is the record of a receiver's start, which
	// knows no end in that second (genLookedAtStart: the record the running receiver started from).
	lookedAt, genLookedAt           int
	lookedAtStart, genLookedAtStart bool

	t       *testing.T
	seed    uint64
	rng     *rand.Rand
	log     []string
	step    int
	failure *simFailure

	// The run's shape.
	reliable bool
	useWatch bool
	// skew is how far the node's clock is ahead of the collector's.
	skew   time.Duration
	policy oomcounterprocessor.GapPolicy
	// persistent: the processor has a storage extension.
	persistent bool
	// ev are the node's SystemOOM events, nil in the runs that deliver without an informer.
	ev *simEvents

	pods       []*simPod
	containers map[string]*simContainer
	// mirrorKeys are the containers of mirror pods; until is, for the containers of a mirror pod
	// that was deleted, the step it went: its series shows nothing after.
	mirrorKeys map[string]bool
	until      map[string]int
	api        map[string]*apiEntry
	rv         int
	incarnated int
	server     simAPI
	watchUp    bool
	relists    int

	// The collector.
	up        bool
	restartAt int
	keepState bool
	gen       int
	genSeen   map[types.UID]bool
	// genMirrors are the mirror pods the running receiver saw a status of, by static pod, the
	// latest last.
	genMirrors map[types.UID]types.UID
	// genSeenStatus are the containers of mirror pods the running receiver saw a status of.
	genSeenStatus map[string]bool
	beliefs       map[string]simBelief
	// resetDue are the containers whose reset the running receiver could tell, and since when:
	// its next scrape must send the 0 at instance 0 that starts the new count.
	resetDue map[string]int
	// ambiguousAt are the containers whose first point, at first sight without storage, flagged
	// the instance before the one the kubelet's default status ended (docs/counting.md), by the
	// instance flagged: the latest state repeats it.
	ambiguousAt map[string]int64
	// shiftedAt are the containers whose point, after a watch gap hid every status since the last
	// container the receiver saw, flagged the end of the kubelet's default status at the instance
	// before its own (docs/counting.md), by the instance flagged: the checker takes it as the
	// flag of the instance that ended.
	shiftedAt  map[string]int64
	genEmitted map[string]bool
	lastScrape map[int]int
	proc       processor.Metrics
	sink       *consumertest.MetricsSink
	abandoned  []processor.Metrics
	store      *simStorage
	host       *simHost
	tt         *componenttest.Telemetry
	late       []pmetric.Metrics
	latePoints [][]*simPoint

	// The checker's knowledge.
	lineage int
	// inLineage: the container's pod was there when the lineage began, or came after.
	inLineage map[string]bool
	horizon   map[string]int
	baselines map[string]simBaseline
	// acceptedSeq are the points the processor of the lineage took, per container, in order.
	acceptedSeq map[string][]*simPoint
	// series model the processor's state of each container in the lineage.
	series    map[string]*simSeries
	emitted   map[string][]*simPoint
	exported  map[string]simExported
	known     map[simKnown]*simKnowledge
	observed  map[string][]simObservation
	delivered int
	checked   int
	// logs receives the receiver's log records; killRecords are the container IDs that had a
	// k8s.container.oom_kill record in the lineage.
	logs        *consumertest.LogsSink
	killRecords map[string]bool
	// forms are the forms the run hit.
	forms map[simForm]bool
}

func runSimulation(t *testing.T, seed uint64) *simulation {
	rng := rand.New(rand.NewPCG(seed, 0x6b75626531))
	s := &simulation{
		t:          t,
		seed:       seed,
		rng:        rng,
		reliable:   rng.IntN(8) == 0,
		useWatch:   seed%simWatchEvery == simWatchEvery-1,
		policy:     oomcounterprocessor.GapPolicyLowerBound,
		persistent: rng.IntN(5) != 0,
		containers: map[string]*simContainer{},
		mirrorKeys: map[string]bool{},
		until:      map[string]int{},
		api:        map[string]*apiEntry{},
		lastScrape: map[int]int{},
		known:      map[simKnown]*simKnowledge{},
		forms:      map[simForm]bool{},
		observed:   map[string][]simObservation{},
		exported:   map[string]simExported{},
		emitted:    map[string][]*simPoint{},
		tt:         componenttest.NewTelemetry(),
		watchUp:    true,
	}
	if rng.IntN(2) == 0 {
		s.policy = oomcounterprocessor.GapPolicyUpperBound
	}
	if rng.IntN(2) == 0 {
		// NTP keeps clocks within a second of each other, well under a status write's delay.
		s.skew = time.Duration(rng.IntN(1801)-900) * time.Millisecond
	}
	if s.useWatch {
		w := &watchAPI{h: scrapertest.New(t), events: new(atomic.Int64)}
		s.server = w
		s.ev = s.newSimEvents(w.h, w.events)
	} else {
		s.server = &directAPI{t: t, tt: s.tt, clock: scrapertest.NewClock(podtest.T0)}
	}
	defer func() {
		for _, p := range s.abandoned {
			_ = p.Shutdown(context.Background())
		}
		if s.up {
			require.NoError(t, s.proc.Shutdown(context.Background()))
			if !s.useWatch {
				s.server.stop()
			}
		}
		require.NoError(t, s.tt.Shutdown(context.Background()))
	}()
	s.logf("seed %d: reliable=%v watch=%v policy=%s storage=%v node clock %+v", seed, s.reliable, s.useWatch, s.policy, s.persistent, s.skew)

	for i := range 2 + rng.IntN(2) {
		s.createPod(fmt.Sprintf("pod%d", i), nil)
	}
	for s.step = 1; s.step <= simHistorySteps; s.step++ {
		s.setNow()
		s.lifecycle()
		if s.ev != nil && s.rng.IntN(3) == 0 {
			s.ev.act()
		}
	}
	s.keepState = false
	s.setNow()
	s.startCollector()
	for s.step = simHistorySteps + 1; s.step <= simHistorySteps+simSteps && s.failure == nil; s.step++ {
		s.setNow()
		s.act()
	}
	if s.failure == nil {
		s.finish()
	}
	return s
}

func (s *simulation) setNow() { s.server.setNow(s.step) }

// hit records that the run hit form f.
func (s *simulation) hit(f simForm) { s.forms[f] = true }

func (s *simulation) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf("s%03d ", s.step)+fmt.Sprintf(format, args...))
}

func (s *simulation) fail(category, format string, args ...any) {
	if s.failure == nil {
		s.failure = &simFailure{category: category, detail: fmt.Sprintf("at step %d: ", s.step) + fmt.Sprintf(format, args...)}
		s.logf("FAIL %s", s.failure)
	}
}

func (s *simulation) describe() string {
	return fmt.Sprintf("%d batches delivered, %d counts checked\n  %s", s.delivered, s.checked, strings.Join(s.log, "\n  "))
}

// act is one step of the world.
func (s *simulation) act() {
	if !s.up {
		if s.step >= s.restartAt {
			s.startCollector()
			return
		}
		if s.ev != nil && s.rng.IntN(3) == 0 {
			s.ev.act()
			return
		}
		s.lifecycle()
		return
	}
	if s.ev != nil && (s.rng.IntN(5) == 0 || !s.ev.watchUp && s.rng.IntN(2) == 0) {
		s.ev.act()
		return
	}
	r := s.rng.IntN(100)
	switch {
	case r < 50:
		s.lifecycle()
	case r < 57:
		for _, p := range s.pods {
			if p.dirty {
				s.kubeletWrite(p)
				break
			}
		}
	case r < 75:
		s.scrape(false)
	case r < 78:
		if !s.reliable && s.watchUp && s.mayRelist() {
			s.watchUp = false
			s.logf("the watch breaks")
		}
	case r < 83:
		if s.mayRelist() {
			s.relist()
		}
	case r < 87:
		p := s.pods[s.rng.IntN(len(s.pods))]
		switch d := s.rng.IntN(6); {
		case p.failed:
		case d == 0:
			s.terminatePod(p)
		case p.policy == corev1.RestartPolicyNever:
		case d < 3:
			s.runtimeLost(p)
		default:
			s.reboot(p)
		}
	case r < 90:
		s.recreate(s.rng.IntN(len(s.pods)))
	case r < 94:
		if !s.reliable {
			s.stopCollector()
		}
	default:
		s.scrape(false)
	}
}

func (s *simulation) finish() {
	s.setNow()
	if !s.up {
		s.startCollector()
		s.step++
		s.setNow()
	}
	if !s.watchUp {
		s.relist()
		s.step++
		s.setNow()
	}
	if s.ev != nil && !s.ev.watchUp {
		s.ev.relist()
		s.step++
		s.setNow()
	}
	for _, p := range s.pods {
		if p.dirty {
			s.kubeletWrite(p)
		}
	}
	for range 2 {
		s.step++
		s.setNow()
		s.scrape(true)
	}
	for _, key := range sortedKeys(s.containers) {
		if s.failure != nil {
			return
		}
		if !s.inLineage[key] {
			// Its pod was gone before the processor state was lost: its series ended before.
			continue
		}
		count := int64(0)
		if e, ok := s.exported[key]; ok && e.lineage == s.lineage {
			count = e.value
		}
		s.check(key, count)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
