// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"fmt"
	"slices"
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
	"go.opentelemetry.io/collector/processor/processortest"
	corev1 "k8s.io/api/core/v1"
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
	// events counts the event notifications the scraper handled.
	events *atomic.Int64
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
	deps := h.Deps()
	if w.events != nil {
		count := deps.Handlers
		deps.Handlers = func(resource string, next cache.ResourceEventHandler) cache.ResourceEventHandler {
			next = count(resource, next)
			if resource == "events" {
				return scrapertest.CountingHandler{ResourceEventHandler: next, Handled: w.events}
			}
			return next
		}
	}
	s, err := scraper.New(h.Settings(), simConfig(host), deps)
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
	if e.sp.static != "" && len(e.views) > 0 {
		defer func() { s.genMirrors[e.sp.static] = e.sp.uid }()
	}
	for name, v := range e.views {
		key := string(e.sp.uid) + "/" + name
		if e.sp.static != "" && !s.genSeenStatus[key] {
			s.genSeenStatus[key] = true
			if h, ok := s.horizon[key]; ok {
				s.horizon[key] = min(h, s.mirrorHorizon(e))
			} else {
				s.horizon[key] = s.mirrorHorizon(e)
			}
		}
		st := v.status
		// The kubelet's default status over a container that ended in back-off: its lastState
		// is the end of instance restartCount, which the status cannot tell from restartCount-1.
		backOffLost := st.inst == nil && st.last != nil && st.last.index == int64(st.rc)
		s.observed[key] = append(s.observed[key], simObservation{gen: s.gen, step: s.step, epoch: s.believe(key, st), backOffLost: backOffLost})
		for _, inst := range v.shown {
			k := s.knowledge(key, inst)
			k.sightings = append(k.sightings, simSighting{gen: s.gen, step: s.step, first: first, listed: listed})
		}
	}
}

// mirrorHorizon is the history horizon of the containers of a mirror pod whose first status the
// running receiver sees in e. A mirror pod's first status is history, whenever the mirror pod
// was created; but a receiver that resumed from storage, and did not see the static pod under
// another mirror pod, takes an end after the earlier run last looked as news: no receiver can
// have reported it, under this mirror pod or another. checkStatic checks that none counts twice.
func (s *simulation) mirrorHorizon(e *apiEntry) int {
	if other, ok := s.genMirrors[e.sp.static]; (!ok || other == e.sp.uid) && s.genLookedAt > 0 {
		return min(e.wrote, s.genLookedAt)
	}
	return e.wrote
}

// simBelief is what a receiver generation can tell of a container's restart-count epoch from
// the statuses it saw. A new epoch shows only where the count cannot have gone on: a lower
// restart count, an unknown container at the same one, or a second end of an instance that
// already ended (docs/counting.md, restart count reset); a status without a container ID shows
// no unknown container, and the count the kubelet raised with a made-up end is the next
// container's. Else the receiver takes the new epoch's statuses as the old count going on,
// unless it saw nothing of the old epoch that names an instance.
type simBelief struct {
	epoch int
	rc    int32
	// id is the instance whose container ID it saw last; nil if none.
	id *simInstance
	// lastEnd is the highest instance a termination it saw in the epoch was named for; -1 if none.
	lastEnd int64
	// known are the ends it saw, made-up ones by index: one seen again is nothing new to it.
	known map[simEnd]bool
	// raised: the latest status it saw was the kubelet's default status that made up the end of
	// a running instance and raised the restart count; the next container comes at that count.
	raised bool
}

// believe records that the running receiver saw st of container key, and returns the epoch it
// can tell st is of.
func (s *simulation) believe(key string, st simStatus) int {
	b, ok := s.beliefs[key]
	ends := st.ends()
	if ok && st.inst == nil && st.last != nil {
		// The kubelet's default status: its lastState ended instance restartCount-1 or, in the
		// back-off form, restartCount. An end of the one before it already saw tells the
		// receiver it is the later one.
		for i, e := range ends {
			if e.inst == st.last && e.index <= b.lastEnd && !b.known[e.key()] {
				ends[i].index = int64(st.rc)
			}
		}
	}
	secondEnd := slices.ContainsFunc(ends, func(e simEnd) bool { return e.index <= b.lastEnd && !b.known[e.key()] })
	unknown := st.inst == nil || st.inst != b.id && !b.known[simEnd{inst: st.inst}]
	switch {
	case !ok, st.epoch > b.epoch && b.id == nil && b.lastEnd < 0:
		b = simBelief{epoch: st.epoch, lastEnd: -1, id: b.id, known: b.known}
	case st.epoch > b.epoch && (st.rc < b.rc && unknown || st.inst != nil && st.rc == b.rc && b.id != nil && unknown && !b.raised || secondEnd):
		// After the reset, a made-up end's number names an instance of the new count.
		known := map[simEnd]bool{}
		for e := range b.known {
			if e.inst != nil {
				known[e] = true
			}
		}
		b = simBelief{epoch: st.epoch, lastEnd: -1, id: b.id, known: known}
		if _, due := s.resetDue[key]; !due {
			s.resetDue[key] = s.step
		}
	}
	if b.known == nil {
		b.known = map[simEnd]bool{}
	}
	b.rc = st.rc
	if st.inst != nil {
		b.id = st.inst
	}
	b.raised = st.inst == nil && st.lastUnknown
	for _, e := range ends {
		b.lastEnd = max(b.lastEnd, e.index)
		b.known[e.key()] = true
	}
	s.beliefs[key] = b
	return b.epoch
}

// knowledge is what the checker knows of inst in the series of container key: a static pod's
// instance is in the series of each mirror pod that showed it.
func (s *simulation) knowledge(key string, inst *simInstance) *simKnowledge {
	k := s.known[simKnown{key, inst}]
	if k == nil {
		k = &simKnowledge{accepted: map[int]bool{}, ambiguous: map[int]bool{}, zeroBetween: map[int]bool{}}
		s.known[simKnown{key, inst}] = k
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
	s.genLookedAt, s.genLookedAtStart = s.lookedAt, s.lookedAtStart
	if s.persistent && s.lookedAt == 0 {
		// A receiver whose storage holds no record yet records its start.
		s.lookedAt, s.lookedAtStart = s.step, true
	}
	s.genSeen = map[types.UID]bool{}
	s.genMirrors = map[types.UID]types.UID{}
	s.genSeenStatus = map[string]bool{}
	s.beliefs = map[string]simBelief{}
	s.resetDue = map[string]int{}
	s.ambiguousAt = map[string]int64{}
	s.shiftedAt = map[string]int64{}
	s.genEmitted = map[string]bool{}
	if !s.keepState {
		s.lineage++
		s.baselines = map[string]simBaseline{}
		s.acceptedSeq = map[string][]*simPoint{}
		s.series = map[string]*simSeries{}
		s.horizon = map[string]int{}
		s.inLineage = map[string]bool{}
		for _, e := range s.api {
			for _, c := range e.sp.all() {
				s.inLineage[c.key()] = true
				if e.sp.static == "" {
					s.horizon[c.key()] = e.wrote
				}
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
	var eventWatches int
	if s.ev != nil {
		eventWatches = s.ev.starting()
	}
	s.server.start(s.apiPods(), host)
	if s.ev != nil {
		s.ev.started(eventWatches)
	}
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
		s.lookedAt, s.lookedAtStart = s.step, false
	}
	pts := s.points(md)
	if s.ev != nil {
		s.ev.scraped()
		s.logf("system OOM delta %d", systemDeltas(md))
	}
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
	if s.ev != nil && (fate == "lost" || fate == "late") {
		s.ev.lost += systemDeltas(md)
	}
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
