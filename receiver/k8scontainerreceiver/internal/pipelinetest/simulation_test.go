// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadatatest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/slimpod"
)

// The simulated kubelet test drives this receiver and the oom_counter processor together with
// the container lifecycles of a simulated node, and checks the exported count of every
// container against the truth after every batch the processor takes.
//
// The node runs a few pods: restartPolicy Always, OnFailure or Never, some with an init
// container. Containers start, are OOM-killed, exit with an error or complete, wait in back-off,
// restart; nodes reboot (same pod, new containers, restart counts from 0); pods are deleted and
// re-created under the same name. The kubelet writes the statuses a real one writes, but merges
// some writes; the watch breaks and the informer relists; scrapes come at random times; batches
// are lost, duplicated or late; the collector restarts, with its processor state in storage
// (after a clean shutdown or a crash) or without it.
//
// The truth of a container is every OOM kill after its history horizon: the kills the status
// showed, or could have shown, when the collector that began the current series first listed
// the pods are history; a container of a pod created later has none. The checker knows which
// kills the receiver could see, which points it emitted and which of them the processor
// accepted, so it can tell which kills a correct pipeline must count:
//   - never more than the truth (lower_bound) or the truth plus the unattributed instances the
//     processor reports (upper_bound);
//   - never less than the kills that must count: all of them, except kills no status the
//     receiver observed showed, kills whose points were all lost on the way (a batch dropped or
//     late, a receiver that stopped before its next scrape), and kills the processor had to take
//     as history because the batch with the first sight of the container was lost. Where nothing
//     was lost the count is exact;
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
)

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
		mu       sync.Mutex
		failures = map[string][]uint64{}
		shown    atomic.Int32
		started  = time.Now()
	)
	t.Run("run", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				s := runSimulation(t, seed)
				if s.failure == nil && !*simLog {
					return
				}
				if s.failure == nil {
					t.Logf("seed %d passed:\n%s", seed, s.describe())
					return
				}
				mu.Lock()
				failures[s.failure.category] = append(failures[s.failure.category], seed)
				mu.Unlock()
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
	categories := make([]string, 0, len(failures))
	for c := range failures {
		categories = append(categories, c)
	}
	sort.Strings(categories)
	for _, c := range categories {
		s := failures[c]
		slices.Sort(s)
		t.Errorf("%d runs failed with %q; seeds %v", len(s), c, s[:min(len(s), 20)])
	}
}

// ---- the node -------------------------------------------------------------------------------

type simPhase int

const (
	// simWaiting: no container of this epoch exists yet.
	simWaiting simPhase = iota
	simRunning
	simTerminated
	// simBackOff: the kubelet moved the dead container's state to lastState and keeps its
	// restart count and container ID.
	simBackOff
)

// simInstance is one run of a container: instance index of a restart-count epoch (a node reboot
// starts a new epoch at index 0).
type simInstance struct {
	epoch    int
	index    int64
	id       string
	started  int
	ended    bool
	reason   string
	endStep  int
	vanished bool // the node rebooted or the pod was deleted under it: no termination shows
}

func (i *simInstance) oom() bool { return i.ended && i.reason == "OOMKilled" }

func (i *simInstance) String() string { return fmt.Sprintf("e%d#%d", i.epoch, i.index) }

func (i *simInstance) terminated() *corev1.ContainerStateTerminated {
	exit := int32(0)
	switch i.reason {
	case "OOMKilled":
		exit = 137
	case "Error":
		exit = 1
	}
	return &corev1.ContainerStateTerminated{
		Reason:      i.reason,
		ExitCode:    exit,
		StartedAt:   metav1.NewTime(podtest.T0.Add(time.Duration(i.started) * time.Second)),
		FinishedAt:  metav1.NewTime(podtest.T0.Add(time.Duration(i.endStep) * time.Second)),
		ContainerID: i.id,
	}
}

type simContainer struct {
	pod   *simPod
	name  string
	init  bool
	epoch int
	phase simPhase
	rc    int32
	// cur is the newest instance of the epoch, nil while simWaiting; prev the one before it.
	cur, prev *simInstance
	// final: the restart policy keeps it as it is.
	final bool
	all   []*simInstance
}

func (c *simContainer) key() string { return string(c.pod.uid) + "/" + c.name }

// status is the container status the kubelet writes, and the instances whose termination it shows.
func (c *simContainer) status() (corev1.ContainerStatus, []*simInstance) {
	s := corev1.ContainerStatus{Name: c.name, RestartCount: c.rc}
	var shown []*simInstance
	last := func(i *simInstance) {
		if i != nil {
			s.LastTerminationState.Terminated = i.terminated()
			shown = append(shown, i)
		}
	}
	switch c.phase {
	case simWaiting:
		reason := "ContainerCreating"
		if !c.init && c.pod.init != nil && !c.pod.initDone {
			reason = "PodInitializing"
		}
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
	case simRunning:
		s.ContainerID = c.cur.id
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(podtest.T0.Add(time.Duration(c.cur.started) * time.Second))}
		last(c.prev)
	case simTerminated:
		s.ContainerID = c.cur.id
		s.State.Terminated = c.cur.terminated()
		shown = append(shown, c.cur)
		last(c.prev)
	case simBackOff:
		s.ContainerID = c.cur.id
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
		last(c.cur)
	}
	return s, shown
}

func (c *simContainer) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s rc=%d", c.name, c.rc)
	switch c.phase {
	case simWaiting:
		b.WriteString(" waiting")
	case simRunning:
		fmt.Fprintf(&b, " running %s", c.cur)
	case simTerminated:
		fmt.Fprintf(&b, " terminated %s %s", c.cur, c.cur.reason)
	case simBackOff:
		fmt.Fprintf(&b, " back-off %s %s", c.cur, c.cur.reason)
	}
	return b.String()
}

type simPod struct {
	name       string
	uid        types.UID
	policy     corev1.RestartPolicy
	init       *simContainer
	containers []*simContainer
	initDone   bool
	failed     bool
	deleted    bool
	// dirty: changed since the kubelet last wrote the status.
	dirty bool
}

func (p *simPod) all() []*simContainer {
	if p.init == nil {
		return p.containers
	}
	return append([]*simContainer{p.init}, p.containers...)
}

// object is the pod as the API server holds it: without statuses until the kubelet wrote one.
func (p *simPod) object(withStatus bool) (*corev1.Pod, map[string]simView) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: podtest.Namespace, Name: p.name, UID: p.uid},
		Spec:       corev1.PodSpec{NodeName: podtest.Node, RestartPolicy: p.policy},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	res := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}
	if p.init != nil {
		pod.Spec.InitContainers = []corev1.Container{{Name: p.init.name, Resources: res}}
	}
	for _, c := range p.containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c.name, Resources: res})
	}
	views := map[string]simView{}
	if !withStatus {
		return pod, views
	}
	pod.Status.Phase = corev1.PodRunning
	if p.failed {
		pod.Status.Phase = corev1.PodFailed
	}
	for _, c := range p.all() {
		s, shown := c.status()
		views[c.name] = simView{epoch: c.epoch, shown: shown}
		if c.init {
			pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, s)
		} else {
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, s)
		}
	}
	return pod, views
}

// simView is what one written status shows of a container.
type simView struct {
	epoch int
	shown []*simInstance
}

// apiEntry is a pod as the API server holds it.
type apiEntry struct {
	pod   *corev1.Pod
	sp    *simPod
	wrote int // the step of the kubelet's latest status write, -1 before the first
	views map[string]simView
}

// ---- the API server and the receiver ---------------------------------------------------------

// simAPI stores the pods and runs the receiver generations that watch them.
type simAPI interface {
	// write stores a change; deliver sends it as a watch event to the running receiver.
	write(kind watch.EventType, pod *corev1.Pod, deliver bool)
	// relist breaks the watch: the informer lists pods again.
	relist(pods []*corev1.Pod)
	// start starts a receiver generation, which lists pods; with a host, the receiver keeps its
	// memory in that host's storage.
	start(pods []*corev1.Pod, host component.Host)
	stop()
	scraper() *scraper.Scraper
	setNow(step int)
}

// directAPI calls the scraper's informer handlers as the informer would, without one.
type directAPI struct {
	t     *testing.T
	tt    *componenttest.Telemetry
	clock *scrapertest.Clock
	s     *scraper.Scraper
	// cache is the informer's store: the latest pod delivered under each name.
	cache map[string]*slimpod.Pod
	// initial is set while the first list is delivered.
	initial bool
}

func (d *directAPI) setNow(step int)           { d.clock.Set(podtest.T0.Add(time.Duration(step) * time.Second)) }
func (d *directAPI) scraper() *scraper.Scraper { return d.s }

func (d *directAPI) write(kind watch.EventType, pod *corev1.Pod, deliver bool) {
	if !deliver || d.s == nil {
		return
	}
	slim := slimpod.Slim(pod, nil, nil)
	old, known := d.cache[pod.Name]
	switch {
	case kind == watch.Deleted:
		d.s.OnDelete(slim)
		delete(d.cache, pod.Name)
	case known:
		d.s.OnUpdate(old, slim)
		d.cache[pod.Name] = slim
	default:
		d.s.OnAdd(slim, false)
		d.cache[pod.Name] = slim
	}
}

// relist does what a shared informer does with a new list: an update for each listed pod whose
// resource version changed, an add for a new name, a tombstone for a name no longer listed.
func (d *directAPI) relist(pods []*corev1.Pod) {
	listed := map[string]bool{}
	for _, pod := range pods {
		listed[pod.Name] = true
		slim := slimpod.Slim(pod, nil, nil)
		old, known := d.cache[pod.Name]
		switch {
		case !known:
			d.s.OnAdd(slim, d.initial)
		case old.ResourceVersion != slim.ResourceVersion:
			d.s.OnUpdate(old, slim)
		}
		d.cache[pod.Name] = slim
	}
	for _, name := range sortedKeys(d.cache) {
		if !listed[name] {
			d.s.OnDelete(cache.DeletedFinalStateUnknown{Key: podtest.Namespace + "/" + name, Obj: d.cache[name]})
			delete(d.cache, name)
		}
	}
}

func (d *directAPI) start(pods []*corev1.Pod, host component.Host) {
	cfg := simConfig(host)
	s, err := scraper.New(metadatatest.NewSettings(d.tt), cfg, scraper.Deps{Now: d.clock.Now})
	require.NoError(d.t, err)
	if host != nil {
		require.NoError(d.t, s.OpenStorage(context.Background(), host))
	}
	d.s = s
	d.cache = map[string]*slimpod.Pod{}
	d.initial = true
	d.relist(pods)
	d.initial = false
}

func (d *directAPI) stop() {
	require.NoError(d.t, d.s.Shutdown(context.Background()))
	d.s = nil
}

// simConfig is the receiver's config of the simulation: the node's pods, no kubelet, and with
// a host, its storage.
func simConfig(host component.Host) *k8scontainerreceiver.Config {
	cfg := k8scontainerreceiver.NewFactory().CreateDefaultConfig().(*k8scontainerreceiver.Config)
	cfg.Node = podtest.Node
	cfg.Kubelet.Enabled = false
	if host != nil {
		id := simStorageID
		cfg.Storage = &id
	}
	return cfg
}

// watchAPI is the fake clientset of the harness: the informer watches and relists it.
type watchAPI struct {
	h       *scrapertest.Harness
	started bool
	running bool
	// names the informer's store holds.
	names map[string]bool
}

func (w *watchAPI) setNow(step int)           { w.h.Clock.Set(podtest.T0.Add(time.Duration(step) * time.Second)) }
func (w *watchAPI) scraper() *scraper.Scraper { return w.h.Scraper }

func (w *watchAPI) write(kind watch.EventType, pod *corev1.Pod, deliver bool) {
	h := w.h
	if deliver && w.running {
		h.Send(kind, pod)
	} else {
		h.Store(kind, pod)
		return
	}
	if kind == watch.Deleted {
		delete(w.names, pod.Name)
	} else {
		w.names[pod.Name] = true
	}
}

func (w *watchAPI) relist(pods []*corev1.Pod) {
	events := len(pods)
	listed := map[string]bool{}
	for _, p := range pods {
		listed[p.Name] = true
	}
	for name := range w.names {
		if !listed[name] {
			events++
		}
	}
	w.h.Relist(pods...)
	w.h.WaitHandled(int64(events))
	w.names = listed
}

func (w *watchAPI) start(pods []*corev1.Pod, host component.Host) {
	h := w.h
	w.names = map[string]bool{}
	for _, p := range pods {
		w.names[p.Name] = true
	}
	w.started = true
	s, err := scraper.New(h.Settings(), simConfig(host), h.Deps())
	require.NoError(h.T, err)
	h.Use(s)
	h.Host = host
	w.running = true
	h.Start()
	h.WaitHandled(int64(len(pods)))
}

func (w *watchAPI) stop() {
	require.NoError(w.h.T, w.h.Scraper.Shutdown(context.Background()))
	w.running = false
}

// ---- storage that outlives a collector -------------------------------------------------------

// simStorage is a storage extension in memory, like file_storage on a disk that survives the
// collector. A crash severs the clients of the dead collector: they write nothing more.
type simStorage struct {
	mu      sync.Mutex
	data    map[string][]byte
	clients []*simStorageClient
}

func newSimStorage() *simStorage { return &simStorage{data: map[string][]byte{}} }

func (*simStorage) Start(context.Context, component.Host) error { return nil }
func (*simStorage) Shutdown(context.Context) error              { return nil }

func (s *simStorage) GetClient(_ context.Context, kind component.Kind, id component.ID, name string) (storage.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &simStorageClient{s: s, prefix: fmt.Sprintf("%s/%s/%s/", kind, id, name)}
	s.clients = append(s.clients, c)
	return c, nil
}

func (s *simStorage) crash() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.clients {
		c.severed = true
	}
}

type simStorageClient struct {
	s       *simStorage
	prefix  string
	severed bool
}

var errSevered = fmt.Errorf("the collector that opened this storage client crashed")

func (c *simStorageClient) Get(ctx context.Context, key string) ([]byte, error) {
	op := storage.GetOperation(key)
	err := c.Batch(ctx, op)
	return op.Value, err
}

func (c *simStorageClient) Set(ctx context.Context, key string, value []byte) error {
	return c.Batch(ctx, storage.SetOperation(key, value))
}

func (c *simStorageClient) Delete(ctx context.Context, key string) error {
	return c.Batch(ctx, storage.DeleteOperation(key))
}

func (c *simStorageClient) Batch(_ context.Context, ops ...*storage.Operation) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.severed {
		return errSevered
	}
	for _, op := range ops {
		switch op.Type {
		case storage.Get:
			if v, ok := c.s.data[c.prefix+op.Key]; ok {
				op.Value = slices.Clone(v)
			} else {
				op.Value = nil
			}
		case storage.Set:
			c.s.data[c.prefix+op.Key] = slices.Clone(op.Value)
		case storage.Delete:
			delete(c.s.data, c.prefix+op.Key)
		}
	}
	return nil
}

func (c *simStorageClient) Close(context.Context) error { return nil }

type simHost struct {
	ext map[component.ID]component.Component
}

func (h *simHost) GetExtensions() map[component.ID]component.Component { return h.ext }

var simStorageID = component.MustNewID("memory")

// ---- the simulation --------------------------------------------------------------------------

type simSighting struct {
	gen, step int
	// first: the receiver saw the pod for the first time in this update; what it shows is
	// history to it. listed: that update was the list of a starting collector.
	first, listed bool
}

// simKnowledge is what the checker knows of one instance's way through the pipeline.
type simKnowledge struct {
	sightings []simSighting
	emitted   bool
	// accepted: a point flagging this OOM kill was accepted by the processor of the lineage.
	accepted map[int]bool
	// ambiguous: when the processor first took it, its state could still be the same instance
	// index of an older restart-count epoch, flagged: it could not tell the two apart, unless
	// it read a 0 in between (zeroBetween) as a reset.
	ambiguous   map[int]bool
	zeroBetween map[int]bool
}

type simObservation struct{ gen, step, epoch int }

// simPoint is a k8s.container.oom_killed point as the receiver emitted it.
type simPoint struct {
	key     string
	ts      int64
	index   int64
	flag    int64
	unknown bool
	inst    *simInstance // nil when the instance did not exist yet (a waiting container)
	epoch   int
	// first: the first point the receiver generation emitted for the container.
	first bool
	// accepted: the processor took it (its timestamp is in the output).
	accepted bool
}

func (p simPoint) String() string {
	v := strconv.FormatInt(p.flag, 10)
	if p.unknown {
		v = "?"
	}
	first := ""
	if p.first {
		first = " first"
	}
	return fmt.Sprintf("%s e%d#%d=%s@%d%s", p.key, p.epoch, p.index, v, p.ts/int64(time.Second)-podtest.T0.Unix(), first)
}

// simBaseline is the first point the processor accepted for a container in a lineage.
type simBaseline struct {
	epoch int
	index int64
	high  bool
	first bool
}

// covers tells whether the processor, from this baseline on, takes inst as history.
func (b simBaseline) covers(inst *simInstance) bool {
	if inst.epoch != b.epoch {
		return inst.epoch < b.epoch
	}
	return inst.index < b.index || inst.index == b.index && b.high
}

type simExported struct {
	lineage      int
	start, value int64
}

type simFailure struct {
	category string
	detail   string
}

func (f *simFailure) String() string { return f.category + ": " + f.detail }

type simulation struct {
	// lookedAt is the step of the latest scrape of a receiver with storage in this lineage: the
	// receiver records it as when it last looked. genLookedAt is its value when the running
	// receiver started.
	lookedAt, genLookedAt int

	t       *testing.T
	seed    uint64
	rng     *rand.Rand
	log     []string
	step    int
	failure *simFailure

	// The run's shape.
	reliable bool
	useWatch bool
	policy   oomcounterprocessor.GapPolicy
	// persistent: the processor has a storage extension.
	persistent bool

	pods       []*simPod
	containers map[string]*simContainer
	api        map[string]*apiEntry
	rv         int
	incarnated int
	server     simAPI
	watchUp    bool
	relists    int

	// The collector.
	up         bool
	restartAt  int
	keepState  bool
	gen        int
	genSeen    map[types.UID]bool
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
	emitted     map[string][]*simPoint
	exported    map[string]simExported
	known       map[*simInstance]*simKnowledge
	observed    map[string][]simObservation
	delivered   int
	checked     int
	// logs receives the receiver's log records; killRecords are the container IDs that had a
	// k8s.container.oom_kill record in the lineage.
	logs        *consumertest.LogsSink
	killRecords map[string]bool
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
		api:        map[string]*apiEntry{},
		lastScrape: map[int]int{},
		known:      map[*simInstance]*simKnowledge{},
		observed:   map[string][]simObservation{},
		exported:   map[string]simExported{},
		emitted:    map[string][]*simPoint{},
		tt:         componenttest.NewTelemetry(),
		watchUp:    true,
	}
	if rng.IntN(4) == 0 {
		s.policy = oomcounterprocessor.GapPolicyUpperBound
	}
	if s.useWatch {
		s.server = &watchAPI{h: scrapertest.New(t)}
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
	s.logf("seed %d: reliable=%v watch=%v policy=%s storage=%v", seed, s.reliable, s.useWatch, s.policy, s.persistent)

	for i := range 2 + rng.IntN(2) {
		s.createPod(fmt.Sprintf("pod%d", i), nil)
	}
	for s.step = 1; s.step <= simHistorySteps; s.step++ {
		s.setNow()
		s.lifecycle()
	}
	s.keepState = false
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
		s.lifecycle()
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
	case r < 86:
		p := s.pods[s.rng.IntN(len(s.pods))]
		if p.policy != corev1.RestartPolicyNever {
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

func (s *simulation) createPod(name string, like *simPod) {
	s.incarnated++
	p := &simPod{name: name, uid: types.UID(fmt.Sprintf("uid-%s-%d", name, s.incarnated)), dirty: true}
	if like == nil {
		switch r := s.rng.IntN(20); {
		case r < 12:
			p.policy = corev1.RestartPolicyAlways
		case r < 15:
			p.policy = corev1.RestartPolicyOnFailure
		default:
			p.policy = corev1.RestartPolicyNever
		}
		if s.rng.IntN(3) == 0 {
			p.init = &simContainer{name: "init", init: true}
		}
		for i := range 1 + s.rng.IntN(2) {
			p.containers = append(p.containers, &simContainer{name: fmt.Sprintf("c%d", i)})
		}
	} else {
		p.policy = like.policy
		if like.init != nil {
			p.init = &simContainer{name: like.init.name, init: true}
		}
		for _, c := range like.containers {
			p.containers = append(p.containers, &simContainer{name: c.name})
		}
	}
	for _, c := range p.all() {
		c.pod = p
		s.containers[c.key()] = c
		if s.inLineage != nil {
			s.inLineage[c.key()] = true
		}
	}
	slot := slices.IndexFunc(s.pods, func(q *simPod) bool { return q.name == name })
	if slot < 0 {
		s.pods = append(s.pods, p)
	} else {
		s.pods[slot] = p
	}
	obj, views := p.object(false)
	e := &apiEntry{pod: obj, sp: p, wrote: -1, views: views}
	s.api[name] = e
	s.logf("%s created as %s (%s, init=%v, %d containers)", name, p.uid, p.policy, p.init != nil, len(p.containers))
	s.apiWrite(watch.Added, e)
}

// lifecycle moves one container on, and the kubelet writes the status or merges the change
// into a later write.
func (s *simulation) lifecycle() {
	type move struct {
		p *simPod
		c *simContainer
	}
	var moves []move
	for _, p := range s.pods {
		for _, c := range p.all() {
			if s.canMove(p, c) {
				moves = append(moves, move{p, c})
			}
		}
	}
	if len(moves) == 0 {
		return
	}
	m := moves[s.rng.IntN(len(moves))]
	s.move(m.p, m.c)
	m.p.dirty = true
	if s.reliable || s.rng.IntN(10) < 6 {
		s.kubeletWrite(m.p)
	}
}

func (s *simulation) canMove(p *simPod, c *simContainer) bool {
	switch {
	case c.final || p.failed:
		return false
	case c.phase == simWaiting:
		return c.init || p.init == nil || p.initDone
	}
	return true
}

func (s *simulation) move(p *simPod, c *simContainer) {
	switch c.phase {
	case simWaiting:
		s.run(c)
	case simRunning:
		reason := "Completed"
		switch r := s.rng.IntN(20); {
		case r < 9:
			reason = "OOMKilled"
		case r < 16:
			reason = "Error"
		}
		c.cur.ended, c.cur.reason, c.cur.endStep = true, reason, s.step
		c.phase = simTerminated
		switch {
		case c.init && reason == "Completed":
			c.final, p.initDone = true, true
		case c.init && p.policy == corev1.RestartPolicyNever:
			c.final, p.failed = true, true
		case p.policy == corev1.RestartPolicyNever,
			p.policy == corev1.RestartPolicyOnFailure && reason == "Completed":
			c.final = true
		}
		s.logf("%s/%s: %s ended %s", p.name, c.name, c.cur, reason)
	case simTerminated:
		if s.rng.IntN(2) == 0 {
			c.phase = simBackOff
			s.logf("%s/%s: %s in back-off", p.name, c.name, c.cur)
			return
		}
		s.run(c)
	case simBackOff:
		s.run(c)
	}
}

// run starts the next instance of c.
func (s *simulation) run(c *simContainer) {
	if c.cur != nil {
		c.prev = c.cur
		c.rc++
	}
	c.cur = &simInstance{
		epoch:   c.epoch,
		index:   int64(c.rc),
		id:      fmt.Sprintf("containerd://%s-%s-e%d-%d", c.pod.uid, c.name, c.epoch, c.rc),
		started: s.step,
	}
	c.all = append(c.all, c.cur)
	c.phase = simRunning
	s.logf("%s/%s: %s runs", c.pod.name, c.name, c.cur)
}

// reboot is a node reboot as this pod sees it: the same pod, new containers, restart counts
// from 0; what ran vanishes without a termination status.
func (s *simulation) reboot(p *simPod) {
	for _, c := range p.all() {
		if c.phase == simRunning {
			c.cur.vanished = true
		}
		c.epoch++
		c.rc, c.cur, c.prev, c.final, c.phase = 0, nil, nil, false, simWaiting
	}
	p.initDone = false
	p.dirty = true
	s.logf("%s: the node reboots, restart counts start again at 0", p.name)
	if s.reliable || s.rng.IntN(2) == 0 {
		s.kubeletWrite(p)
	}
}

// recreate deletes the pod in slot and creates it again under the same name, with a new UID.
func (s *simulation) recreate(slot int) {
	old := s.pods[slot]
	old.deleted = true
	for _, c := range old.all() {
		if c.phase == simRunning {
			c.cur.vanished = true
		}
	}
	e := s.api[old.name]
	delete(s.api, old.name)
	s.logf("%s (%s) deleted", old.name, old.uid)
	s.apiWrite(watch.Deleted, e)
	s.createPod(old.name, old)
}

func (s *simulation) kubeletWrite(p *simPod) {
	obj, views := p.object(true)
	e := &apiEntry{pod: obj, sp: p, wrote: s.step, views: views}
	s.api[p.name] = e
	p.dirty = false
	parts := make([]string, 0, len(p.containers)+1)
	for _, c := range p.all() {
		parts = append(parts, c.describe())
	}
	s.logf("kubelet writes %s: %s", p.name, strings.Join(parts, "; "))
	s.apiWrite(watch.Modified, e)
}

// apiWrite stores a change in the API server; a running receiver whose watch is up sees it.
func (s *simulation) apiWrite(kind watch.EventType, e *apiEntry) {
	s.rv++
	e.pod.ResourceVersion = strconv.Itoa(s.rv)
	deliver := s.up && s.watchUp
	s.server.write(kind, e.pod, deliver)
	if deliver && kind != watch.Deleted {
		s.observe(e, false)
	}
}

// observe records what the receiver saw in a pod.
func (s *simulation) observe(e *apiEntry, listed bool) {
	first := !s.genSeen[e.sp.uid]
	s.genSeen[e.sp.uid] = true
	for name, v := range e.views {
		key := string(e.sp.uid) + "/" + name
		s.observed[key] = append(s.observed[key], simObservation{gen: s.gen, step: s.step, epoch: v.epoch})
		for _, inst := range v.shown {
			k := s.knowledge(inst)
			k.sightings = append(k.sightings, simSighting{gen: s.gen, step: s.step, first: first, listed: listed})
		}
	}
}

func (s *simulation) knowledge(inst *simInstance) *simKnowledge {
	k := s.known[inst]
	if k == nil {
		k = &simKnowledge{accepted: map[int]bool{}, ambiguous: map[int]bool{}, zeroBetween: map[int]bool{}}
		s.known[inst] = k
	}
	return k
}

func (s *simulation) apiPods() []*corev1.Pod {
	names := sortedKeys(s.api)
	pods := make([]*corev1.Pod, 0, len(names))
	for _, n := range names {
		pods = append(pods, s.api[n].pod)
	}
	return pods
}

// mayRelist limits the relists of runs through the informer: its reflector waits a second
// before it lists again.
func (s *simulation) mayRelist() bool { return !s.useWatch || s.relists == 0 }

func (s *simulation) relist() {
	s.relists++
	s.logf("the watch ends with 410 Gone: the informer relists")
	pods := s.apiPods()
	s.server.relist(pods)
	s.watchUp = true
	for _, n := range sortedKeys(s.api) {
		s.observe(s.api[n], false)
	}
}

// ---- the collector ---------------------------------------------------------------------------

func (s *simulation) stopCollector() {
	switch r := s.rng.IntN(3); {
	case !s.persistent:
		require.NoError(s.t, s.proc.Shutdown(context.Background()))
		s.keepState = false
		s.logf("the collector stops; the processor has no storage")
	case r == 0:
		require.NoError(s.t, s.proc.Shutdown(context.Background()))
		s.keepState = true
		s.logf("the collector shuts down cleanly")
	case r == 1:
		s.store.crash()
		s.abandoned = append(s.abandoned, s.proc)
		s.keepState = true
		s.logf("the collector crashes")
	default:
		require.NoError(s.t, s.proc.Shutdown(context.Background()))
		s.keepState = false
		s.logf("the collector stops and its storage is lost")
	}
	s.server.stop()
	s.up = false
	s.late, s.latePoints = nil, nil
	s.restartAt = s.step + 1 + s.rng.IntN(4)
}

func (s *simulation) startCollector() {
	s.gen++
	if !s.keepState {
		s.lookedAt = 0
	}
	s.genLookedAt = s.lookedAt
	if s.persistent && s.lookedAt == 0 {
		// A receiver whose storage holds no record yet records its start.
		s.lookedAt = s.step
	}
	s.genSeen = map[types.UID]bool{}
	s.genEmitted = map[string]bool{}
	if !s.keepState {
		s.lineage++
		s.baselines = map[string]simBaseline{}
		s.acceptedSeq = map[string][]*simPoint{}
		s.horizon = map[string]int{}
		s.inLineage = map[string]bool{}
		for _, e := range s.api {
			for _, c := range e.sp.all() {
				s.horizon[c.key()] = e.wrote
				s.inLineage[c.key()] = true
			}
		}
		s.store = newSimStorage()
		s.host = &simHost{ext: map[component.ID]component.Component{simStorageID: s.store}}
	}
	f := oomcounterprocessor.NewFactory()
	cfg := f.CreateDefaultConfig().(*oomcounterprocessor.Config)
	cfg.GapPolicy = s.policy
	cfg.CheckpointInterval = time.Hour
	if s.persistent {
		id := simStorageID
		cfg.Storage = &id
	}
	set := processortest.NewNopSettings(f.Type())
	set.TelemetrySettings = s.tt.NewTelemetrySettings()
	s.sink = new(consumertest.MetricsSink)
	proc, err := f.CreateMetrics(context.Background(), set, cfg, s.sink)
	require.NoError(s.t, err)
	require.NoError(s.t, proc.Start(context.Background(), s.host))
	s.proc = proc
	s.logf("collector %d starts (lineage %d) and lists %d pods", s.gen, s.lineage, len(s.api))
	s.up, s.watchUp = true, true
	var host component.Host
	if s.persistent {
		host = s.host
	}
	s.server.start(s.apiPods(), host)
	s.logs = new(consumertest.LogsSink)
	s.server.scraper().SetLogs(s.logs)
	if !s.keepState || s.killRecords == nil {
		s.killRecords = map[string]bool{}
	}
	for _, n := range sortedKeys(s.api) {
		s.observe(s.api[n], true)
	}
}

// scrape scrapes and sends the batch on: delivered, lost, duplicated or late. reliable forces
// delivery.
func (s *simulation) scrape(reliable bool) {
	md, err := s.server.scraper().Scrape(context.Background())
	require.NoError(s.t, err)
	s.lastScrape[s.gen] = s.step
	if s.persistent {
		s.lookedAt = s.step
	}
	pts := s.points(md)
	s.checkKillRecords()
	if s.failure != nil {
		return
	}
	fate := "delivered"
	if !reliable && !s.reliable {
		switch r := s.rng.IntN(100); {
		case r < 10:
			fate = "lost"
		case r < 18:
			fate = "delivered twice"
		case r < 24:
			fate = "late"
		}
	}
	summary := make([]string, len(pts))
	for i, p := range pts {
		summary[i] = p.String()
	}
	s.logf("scrape, batch %s: %s", fate, strings.Join(summary, ", "))
	switch fate {
	case "lost":
		return
	case "late":
		s.late, s.latePoints = append(s.late, md), append(s.latePoints, pts)
		return
	case "delivered twice":
		again := pmetric.NewMetrics()
		md.CopyTo(again)
		s.deliver(md, pts)
		s.deliver(again, pts)
	default:
		s.deliver(md, pts)
	}
	for len(s.late) > 0 && s.failure == nil {
		md, pts := s.late[0], s.latePoints[0]
		s.late, s.latePoints = s.late[1:], s.latePoints[1:]
		s.logf("a late batch arrives")
		s.deliver(md, pts)
	}
}

// checkKillRecords checks the k8s.container.oom_kill records of the scrape: each is about an
// instance the OOM killer really ended, names its restart index, and comes once in a lineage
// (a collector restart with its state kept repeats none).
func (s *simulation) checkKillRecords() {
	defer s.logs.Reset()
	for _, ld := range s.logs.AllLogs() {
		for _, rl := range ld.ResourceLogs().All() {
			uid, _ := rl.Resource().Attributes().Get("k8s.pod.uid")
			name, _ := rl.Resource().Attributes().Get("k8s.container.name")
			key := uid.Str() + "/" + name.Str()
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					if lr.EventName() != "k8s.container.oom_kill" {
						continue
					}
					id, _ := lr.Attributes().Get("container.id")
					index, _ := lr.Attributes().Get("k8s.container.restart_count")
					var inst *simInstance
					if c := s.containers[key]; c != nil {
						for _, i := range c.all {
							if strings.TrimPrefix(i.id, "containerd://") == id.Str() {
								inst = i
							}
						}
					}
					switch {
					case inst == nil || !inst.oom():
						s.fail("kill record for no OOM kill", "%s: record for container %s, which the OOM killer did not end", key, id.Str())
					case inst.index != index.Int():
						s.fail("kill record names the wrong instance", "%s: record for %s names restart index %d", key, inst, index.Int())
					case s.killRecords[id.Str()]:
						s.fail("kill record repeated", "%s: a second record for the kill of %s", key, inst)
					}
					s.logf("record: %s killed", inst)
					s.killRecords[id.Str()] = true
				}
			}
		}
	}
}

// points reads the k8s.container.oom_killed points of a batch and names the instance each one
// is about.
func (s *simulation) points(md pmetric.Metrics) []*simPoint {
	var out []*simPoint
	for _, rm := range md.ResourceMetrics().All() {
		uid, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
		name, _ := rm.Resource().Attributes().Get("k8s.container.name")
		key := uid.Str() + "/" + name.Str()
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() != "k8s.container.oom_killed" {
					continue
				}
				for _, dp := range m.Gauge().DataPoints().All() {
					index, _ := dp.Attributes().Get("k8s.container.restart_count")
					p := &simPoint{
						key:     key,
						ts:      int64(dp.Timestamp()),
						index:   index.Int(),
						flag:    dp.IntValue(),
						unknown: dp.Flags().NoRecordedValue(),
						first:   !s.genEmitted[key],
					}
					s.genEmitted[key] = true
					var seenEpoch int
					p.inst, p.epoch, seenEpoch = s.resolve(key, p.index, p.ts)
					if p.flag == 1 && !p.unknown {
						switch {
						case s.staleOOM(key, p.index, p.inst):
							s.fail("after a restart-count reset the receiver repeats an OOM kill of the old count",
								"%s: the instance of the current count is %v, the receiver saw restart-count epoch %d already", p, p.inst, seenEpoch)
							return out
						case p.inst == nil || !p.inst.oom():
							s.fail("a point flags an OOM kill that did not happen", "%s: the instance is %v", p, p.inst)
							return out
						case p.inst.epoch < seenEpoch:
							s.fail("after a restart-count reset the receiver repeats an OOM kill of the old count",
								"%s: the receiver saw restart-count epoch %d already", p, seenEpoch)
							return out
						}
						s.knowledge(p.inst).emitted = true
					}
					out = append(out, p)
					s.emitted[key] = append(s.emitted[key], p)
				}
			}
		}
	}
	return out
}

// staleOOM tells a flag for an instance that was not OOM-killed, while the instance with that
// index of an older restart-count epoch was.
func (s *simulation) staleOOM(key string, index int64, inst *simInstance) bool {
	if inst == nil || inst.oom() {
		return false
	}
	for _, old := range s.containers[key].all {
		if old.epoch < inst.epoch && old.index == index && old.oom() {
			return true
		}
	}
	return false
}

// resolve names the instance a point is about: the point's time tells which status the receiver
// saw last, and so the restart-count epoch of its index. An index the epoch has not reached is
// one of an older epoch. It returns the instance, its epoch and the epoch of that status.
func (s *simulation) resolve(key string, index int64, ts int64) (*simInstance, int, int) {
	step := int((ts - podtest.T0.UnixNano()) / int64(time.Second))
	epoch := 0
	for _, o := range s.observed[key] {
		if o.gen == s.gen && o.step <= step {
			epoch = o.epoch
		}
	}
	c := s.containers[key]
	if c == nil {
		return nil, epoch, epoch
	}
	for e := epoch; e >= 0; e-- {
		for _, inst := range c.all {
			if inst.epoch == e && inst.index == index {
				return inst, e, epoch
			}
		}
	}
	return nil, epoch, epoch
}

// deliver hands a batch to the processor and checks what it exports.
func (s *simulation) deliver(md pmetric.Metrics, pts []*simPoint) {
	s.delivered++
	require.NoError(s.t, s.proc.ConsumeMetrics(context.Background(), md))
	type out struct{ start, value int64 }
	accepted := map[string]map[int64]bool{}
	last := map[string]out{}
	var order []string
	for _, md := range s.sink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			uid, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
			name, _ := rm.Resource().Attributes().Get("k8s.container.name")
			key := uid.Str() + "/" + name.Str()
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != "k8s.container.oom_kills" {
						continue
					}
					if m.Type() != pmetric.MetricTypeSum || !m.Sum().IsMonotonic() {
						s.fail("the count is no monotonic sum", "%s: %s", key, m.Type())
						return
					}
					for _, dp := range m.Sum().DataPoints().All() {
						if accepted[key] == nil {
							accepted[key] = map[int64]bool{}
							order = append(order, key)
						}
						accepted[key][int64(dp.Timestamp())] = true
						o := out{start: int64(dp.StartTimestamp()), value: dp.IntValue()}
						s.checkStart(key, o.start, o.value)
						last[key] = o
					}
				}
			}
		}
	}
	s.sink.Reset()
	for _, p := range pts {
		if !accepted[p.key][p.ts] {
			continue
		}
		p.accepted = true
		if _, ok := s.baselines[p.key]; !ok {
			b := simBaseline{epoch: p.epoch, index: p.index, high: p.flag == 1 || p.unknown, first: p.first}
			s.baselines[p.key] = b
			s.logf("%s: the processor's baseline is e%d#%d high=%v (first sight: %v)", p.key, b.epoch, b.index, b.high, b.first)
		}
		if p.flag == 1 && !p.unknown && p.inst != nil {
			k := s.knowledge(p.inst)
			if !k.accepted[s.lineage] {
				k.ambiguous[s.lineage], k.zeroBetween[s.lineage] = s.ambiguous(p)
			}
			k.accepted[s.lineage] = true
		}
		s.acceptedSeq[p.key] = append(s.acceptedSeq[p.key], p)
	}
	for _, key := range order {
		o := last[key]
		s.exported[key] = simExported{lineage: s.lineage, start: o.start, value: o.value}
		s.check(key, o.value)
	}
}

// ambiguous tells whether the processor, taking flagged point p, may still hold the same
// instance index of an older epoch as flagged: every point it took since that one had p's
// index. zero tells that one of them was a 0 of p's epoch, which shows the reset.
func (s *simulation) ambiguous(p *simPoint) (ambiguous, zero bool) {
	seq := s.acceptedSeq[p.key]
	for i := len(seq) - 1; i >= 0; i-- {
		q := seq[i]
		switch {
		case q.index != p.index:
			return false, false
		case q.epoch < p.epoch && (q.flag == 1 || q.unknown):
			return true, zero
		case q.epoch == p.epoch && q.flag == 0 && !q.unknown:
			zero = true
		}
	}
	return false, false
}

// checkStart: within one StartTimestamp the count never decreases; a new one only comes with
// a new lineage (state lost), never while the state survives.
func (s *simulation) checkStart(key string, start, value int64) {
	prev, ok := s.exported[key]
	switch {
	case !ok:
	case prev.lineage == s.lineage && prev.start != start:
		s.fail("the StartTimestamp changed while the state survived", "%s: start %d, then %d", key, prev.start, start)
	case prev.lineage == s.lineage && value < prev.value:
		s.fail("the count decreased within one StartTimestamp", "%s: %d, then %d", key, prev.value, value)
	case prev.lineage != s.lineage && start <= prev.start:
		s.fail("a lost state restarted the count without a new StartTimestamp", "%s: start %d, then %d", key, prev.start, start)
	}
	s.exported[key] = simExported{lineage: s.lineage, start: start, value: value}
}

// check compares a container's exported count with the truth.
func (s *simulation) check(key string, count int64) {
	c := s.containers[key]
	if c == nil {
		s.fail("a count for a container that never existed", "%s", key)
		return
	}
	s.checked++
	horizon, ok := s.horizon[key]
	if !ok {
		horizon = -1
	}
	var truth, must []*simInstance
	var why []string
	for _, inst := range c.all {
		if !inst.oom() || inst.endStep <= horizon {
			continue
		}
		truth = append(truth, inst)
		if reason, counts := s.mustCount(key, inst); counts {
			must = append(must, inst)
			why = append(why, inst.String()+": "+reason)
		}
	}
	upper := int64(len(truth))
	unattributed := int64(0)
	if count > upper && s.policy == oomcounterprocessor.GapPolicyUpperBound {
		unattributed = s.unattributed()
		upper += unattributed
	}
	if count > upper {
		s.fail("counted more OOM kills than happened", "%s: count %d, %d OOM kills %v since the history horizon (step %d), %d unattributed",
			key, count, len(truth), truth, horizon, unattributed)
		return
	}
	if count < int64(len(must)) {
		category := "missed an OOM kill that was " + likeliestMiss(why)
		s.fail(category, "%s: count %d, but these %d must count: %s (all %d since the horizon: %v)",
			key, count, len(must), strings.Join(why, "; "), len(truth), truth)
		return
	}
	if s.reliable && count != int64(len(truth)) {
		// Every status was written and delivered, every batch too: nothing excuses a difference.
		s.fail("not exact although nothing was lost", "%s: count %d, %d OOM kills %v since the history horizon (step %d)",
			key, count, len(truth), truth, horizon)
	}
}

// likeliestMiss picks, of the reasons why kills must count, the one most likely behind a miss:
// the count cannot say which kill it lacks.
func likeliestMiss(why []string) string {
	best, rank := "", -1
	for _, w := range why {
		reason := strings.SplitN(w, ": ", 2)[1]
		r := 0
		switch {
		case strings.Contains(reason, "taken as history"):
			r = 3
		case strings.Contains(reason, "never reported"):
			r = 2
		case strings.Contains(reason, "reset"):
			r = 1
		}
		if r > rank {
			best, rank = reason, r
		}
	}
	return best
}

// mustCount tells whether a correct pipeline counts inst, and why.
func (s *simulation) mustCount(key string, inst *simInstance) (string, bool) {
	k := s.known[inst]
	if k == nil || len(k.sightings) == 0 {
		return "never shown in a status the receiver saw", false
	}
	atFirstSight, firstSightListed := false, false
	firstSight := "shown when a relist brought its pod to the receiver for the first time, and taken as history"
	lostWithCollector := false
	for _, sg := range k.sightings {
		if sg.gen != s.gen && s.lastScrape[sg.gen] < sg.step {
			// Seen by a collector that stopped before its next scrape: nothing was reported.
			lostWithCollector = true
			continue
		}
		if sg.first {
			atFirstSight = true
			if sg.listed {
				firstSightListed = true
				firstSight = "shown when a restarted collector first listed its pod, and taken as history"
			}
		} else if sg.gen != s.gen && s.lastScrape[sg.gen] < sg.step {
			lostWithCollector = true
		}
	}
	b, hasBaseline := s.baselines[key]
	switch {
	case atFirstSight && firstSightListed && s.genLookedAt > 0 && inst.endStep <= s.genLookedAt:
		// The restarted receiver takes as news only what ended after it last looked; a kill
		// that ended before, but whose status reached no receiver in time (a status write
		// merged or late, a watch down), is history to it.
		return "ended before the restarted receiver last looked, its status seen only after", false
	case k.emitted && atFirstSight && hasBaseline && b.covers(inst) && b.first && s.lostBeforeRestart(key, inst):
		// The receiver records when it last looked before it hands a scrape on, so that a
		// restart never reports a kill twice; a kill reported only in a batch lost just before
		// the restart is history to the restarted one.
		return "reported only in a batch lost before a collector restart, then taken as history", false
	case k.accepted[s.lineage] && hasBaseline && b.covers(inst) && b.first:
		return firstSight, true
	case k.accepted[s.lineage] && hasBaseline && b.covers(inst):
		return "accepted but under a baseline the processor took after the first sight was lost", false
	case k.accepted[s.lineage] && k.ambiguous[s.lineage] && s.resetLost(key, inst):
		return "accepted after a restart-count reset whose evidence was lost on the way", false
	case k.accepted[s.lineage] && k.ambiguous[s.lineage] && k.zeroBetween[s.lineage]:
		return "accepted after a restart-count reset the processor saw only as a 0 after a 1 at the same restart count", true
	case k.accepted[s.lineage] && k.ambiguous[s.lineage]:
		return "accepted, but no point told the processor of the restart-count reset before it", true
	case k.accepted[s.lineage]:
		return "reported and accepted", true
	case k.emitted:
		return "reported only in batches that were lost or came late", false
	case atFirstSight:
		return firstSight, true
	case lostWithCollector:
		return "seen by a collector that stopped before its next scrape", false
	}
	return "seen by the receiver but never reported", true
}

// lostBeforeRestart tells whether a collector that stopped reported inst only in batches that
// were lost.
func (s *simulation) lostBeforeRestart(key string, inst *simInstance) bool {
	for _, p := range s.emitted[key] {
		if p.inst == inst && !p.first && !p.accepted {
			return true
		}
	}
	return false
}

// resetLost tells whether the receiver emitted a point of inst's epoch below its index that the
// processor never took: the point that would have shown it the reset.
func (s *simulation) resetLost(key string, inst *simInstance) bool {
	for _, p := range s.emitted[key] {
		// A point below inst's index, or the 0 at its index that marks the reset, in a lost batch.
		if p.epoch == inst.epoch && !p.accepted && (p.index < inst.index || p.index == inst.index && p.flag == 0 && !p.unknown) {
			return true
		}
	}
	return false
}

func (s *simulation) unattributed() int64 {
	m, err := s.tt.GetMetric("otelcol_oom_counter_restarts_unattributed")
	if err != nil {
		return 0
	}
	var n int64
	if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
		for _, dp := range sum.DataPoints {
			n += dp.Value
		}
	}
	return n
}

// finish brings everything to light: the collector runs, the watch is up, the kubelet wrote
// every status, and two batches reach the processor. Then every container is checked,
// including those never exported.
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
