// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package containerstate holds what the receiver knows about each container between two
// scrapes: the terminations already seen, the points not yet scraped, and the latest state.
//
// Every pod update is diffed against this state at once, so a termination that is visible
// in the pod status only between two scrapes is still reported.
package containerstate

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/slimpod"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workload"
)

// knownKeys is how many recent terminations of a container are remembered to recognise them
// when they show up again. A status shows at most two, the newest; older ones never return.
const knownKeys = 4

// Point is one value of the OOM-kill flag of a container instance.
type Point struct {
	// Instance is the restart index the point is about.
	Instance  int64
	OOMKilled bool
	// Unknown tells that the instance ended but no status the receiver saw showed its
	// termination (writes merged, a watch that was down): its outcome is not known.
	Unknown bool
	// Time is when the state was observed; the points of one container strictly increase.
	Time time.Time
	// Since is set on a point that reports what the receiver saw happen while it watched the
	// container: the time since which it watched. Zero on a point that may report history.
	Since time.Time
}

// Pod is the part of a pod the metrics need.
type Pod struct {
	UID types.UID
	// RuntimeUID is the UID the kubelet, the runtime and the kubelet's stats know the pod by:
	// for a mirror pod, its static pod's; else UID.
	RuntimeUID  types.UID
	Namespace   string
	Name        string
	Node        string
	Labels      map[string]string
	Annotations map[string]string
	// QOSClass is the pod's QoS class; empty if the status does not say yet.
	QOSClass string
	// MemoryLimit is the pod's own memory limit in bytes (pod-level resources); 0 if none.
	MemoryLimit int64
	// Workload names the workloads the pod belongs to.
	Workload   workload.Names
	Containers []*Container

	deleted bool
}

// Container is one container of a pod (regular, init or ephemeral; names are unique in a pod).
type Container struct {
	Name         string
	ContainerID  string
	RestartCount int32
	// MemoryLimit and MemoryRequest are in bytes; 0 means not set.
	MemoryLimit   int64
	MemoryRequest int64
	// Last is the newest termination seen, valid when HasLast.
	Last    termination.Termination
	HasLast bool

	known  [knownKeys]termination.Key
	nKnown int
	// lastContainerID is the newest container ID a status showed; the kubelet's default status
	// after the runtime lost the container shows none.
	lastContainerID string
	// lastContainerInstance is the instance lastContainerID ran as: the restart count the status
	// showed with it first.
	lastContainerInstance int64
	// nextUnended is the lowest instance whose end has not been reported yet.
	nextUnended int64
	// watchedSince is when the receiver began to watch the container; wholeLife tells that it
	// watched the container's whole life.
	watchedSince time.Time
	wholeLife    bool
	// lastNews tells that Last was seen to happen while the receiver watched.
	lastNews bool
	pending  []Point
	lastTime time.Time
	// kills are the OOM kills reported as news since the last Drain, oldest first; innerKills
	// the terminations reported as news that were marked OOMKilled though PID 1 exited by itself.
	kills, innerKills []termination.Termination
}

// Kills returns the OOM kills reported as news since the last Drain, oldest first: one each,
// never one taken as history. Valid during Drain's emit only.
func (c *Container) Kills() []termination.Termination { return c.kills }

// InnerKills returns the terminations reported as news since the last Drain that the runtime
// marked OOMKilled though the main process exited by itself: the OOM killer killed another
// process in the container, which did not end it. They are no container OOM kill. Valid during
// Drain's emit only.
func (c *Container) InnerKills() []termination.Termination { return c.innerKills }

// WatchedWhole tells that the receiver watched the container's whole life: its pod was created
// while the receiver watched, or it was added to a pod already watched. Every instance of it
// started while the receiver watched. A mirror pod's containers never are: their static pod may
// have run long before.
func (c *Container) WatchedWhole() bool { return c.wholeLife }

// Observed counts what one update brought.
type Observed struct {
	Terminations int
	OOMKills     int
	// HistoryOOMKills are OOM kills already in a container's status when it was first seen:
	// taken as history, not reported as news, though some may have happened while nobody watched.
	HistoryOOMKills int
	// Unseen counts instances that ended without any status showing their termination.
	Unseen int
	// Dropped counts points that did not fit in the pending limit; the oldest go first.
	Dropped int
}

// news counts a termination reported as news.
func (o *Observed) news(term termination.Termination) {
	if term.OutcomeUnknown() {
		o.Unseen++
		return
	}
	o.Terminations++
	if term.OOMKilled() {
		o.OOMKills++
	}
}

func (o *Observed) add(p Observed) {
	o.Terminations += p.Terminations
	o.OOMKills += p.OOMKills
	o.HistoryOOMKills += p.HistoryOOMKills
	o.Unseen += p.Unseen
	o.Dropped += p.Dropped
}

// Tracker is the state of all containers of the watched pods. It is safe for concurrent use.
type Tracker struct {
	mu sync.Mutex
	// horizon is when an earlier run of the receiver last looked; zero if unknown. ended are the
	// terminations it knew then that ended in the second of the horizon: a status gives end
	// times to the second, so only these tell an end in that second already reported from one
	// after it. unended is, per container, the lowest instance whose end it had not reported.
	horizon    time.Time
	ended      map[termination.Key]bool
	endedKnown bool
	unended    map[containerRef]int64
	// reportedEnd is, per container, the container ID of the newest end the earlier run reported.
	reportedEnd map[containerRef]string
	pods        map[types.UID]*Pod
	// mirrors are, by static pod, the mirror pods this run saw it under, the latest first seen
	// last.
	mirrors    map[types.UID]types.UID
	maxPending int
	sticky     [1]Point
}

// New returns an empty tracker that keeps at most maxPending unscraped points per container.
func New(maxPending int) *Tracker {
	return &Tracker{pods: make(map[types.UID]*Pod), mirrors: make(map[types.UID]types.UID), maxPending: max(maxPending, 1)}
}

// Upsert diffs pod against what is known and records each new termination, observed at now.
// A container seen for the first time gets a baseline point instead: what it shows then is
// history, not news.
func (t *Tracker) Upsert(pod *slimpod.Pod, now time.Time) Observed {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.upsert(pod, false, now)
}

// UpsertCreated is Upsert for a pod created while the receiver watched (it appeared after the
// informer's initial list, or replaced a watched pod under the same name): everything its
// status shows happened while the receiver watched, so its terminations are news.
func (t *Tracker) UpsertCreated(pod *slimpod.Pod, now time.Time) Observed {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.upsert(pod, true, now)
}

// Delete records what the final state of a deleted pod shows, then forgets the pod: at once
// if nothing waits to be scraped, else after the next Drain.
func (t *Tracker) Delete(pod *slimpod.Pod, now time.Time) Observed {
	t.mu.Lock()
	defer t.mu.Unlock()
	obs := t.upsert(pod, false, now)
	p := t.pods[pod.UID]
	p.deleted = true
	if !p.hasPending() {
		delete(t.pods, pod.UID)
	}
	return obs
}

// DrainRecorded hands every container with its points since the last drain to emit: the
// baseline and the terminations observed, oldest first, or else one point for its latest state,
// stamped now. Pods deleted since are forgotten afterwards. emit must not keep the points slice.
//
// First, with nothing observed in between, it hands record the horizon at now (see Resume) and
// what the drain is about to hand out: what record keeps as reported is exactly what this drain
// hands out or drains handed out before. If record fails, nothing is drained, and its error is
// returned.
func (t *Tracker) DrainRecorded(now time.Time, record func(Horizon, Pending) error, emit func(*Pod, *Container, []Point)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if record != nil {
		if err := record(t.horizonAt(now), Pending{t}); err != nil {
			return err
		}
	}
	for uid, p := range t.pods {
		for _, c := range p.Containers {
			if len(c.pending) > 0 {
				emit(p, c, c.pending)
				c.pending = c.pending[:0]
				c.kills, c.innerKills = c.kills[:0], c.innerKills[:0]
				continue
			}
			if p.deleted {
				continue
			}
			t.sticky[0] = c.latest(c.stamp(now))
			emit(p, c, t.sticky[:])
		}
		if p.deleted {
			delete(t.pods, uid)
		}
	}
	return nil
}

// Pending is what a drain is about to hand out, as its record sees it.
type Pending struct{ t *Tracker }

// InnerKills calls fn for each termination the drain hands out that the runtime marked OOMKilled
// though PID 1 exited by itself (see Container.InnerKills).
func (p Pending) InnerKills(fn func(*Pod, *Container, termination.Termination)) {
	for _, pod := range p.t.pods {
		for _, c := range pod.Containers {
			for _, k := range c.innerKills {
				fn(pod, c, k)
			}
		}
	}
}

// Each calls fn for every container of the pods not deleted.
func (t *Tracker) Each(fn func(*Pod, *Container)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.pods {
		if p.deleted {
			continue
		}
		for _, c := range p.Containers {
			fn(p, c)
		}
	}
}

func (t *Tracker) upsert(pod *slimpod.Pod, created bool, now time.Time) Observed {
	p := t.pods[pod.UID]
	newPod := p == nil
	if newPod {
		p = &Pod{UID: pod.UID}
		t.pods[pod.UID] = p
	}
	p.Namespace, p.Name, p.Node, p.RuntimeUID = pod.Namespace, pod.Name, pod.NodeName, pod.RuntimeUID()
	p.Labels, p.Annotations = pod.Labels, pod.Annotations
	p.QOSClass, p.Workload, p.MemoryLimit = string(pod.QOSClass), pod.Workload(), pod.MemoryLimit
	p.deleted = false

	// A mirror pod is created by the kubelet for a static pod that may have run long before, and
	// again whenever it is deleted: the static pod's cached status then shows old terminations.
	// Its containers' first statuses are history, whenever the mirror pod was created.
	watchedWhole := (created || !newPod) && pod.StaticUID == ""
	var obs Observed
	for i := range pod.Containers {
		obs.add(t.observe(p, &pod.Containers[i], watchedWhole, now))
	}
	if pod.StaticUID != "" && len(pod.Containers) > 0 {
		t.mirrors[pod.StaticUID] = pod.UID
	}
	return obs
}

// observe diffs one container's status. podKnown tells that the pod was seen before this update,
// or created while the receiver watched: then a container seen for the first time got its status
// while the receiver watched, and its terminations are news, not history.
func (t *Tracker) observe(p *Pod, s *slimpod.Container, podKnown bool, now time.Time) Observed {
	c, firstSight := p.container(s.Name)
	var obs Observed
	if !firstSight && c.isReset(s) {
		obs.Dropped += t.reset(c, now)
	}
	c.ContainerID = s.Status.ContainerID
	if c.ContainerID != "" && c.ContainerID != c.lastContainerID {
		c.lastContainerID, c.lastContainerInstance = c.ContainerID, int64(s.Status.RestartCount)
	}
	c.RestartCount = s.Status.RestartCount
	c.MemoryLimit, c.MemoryRequest = s.MemoryLimit, s.MemoryRequest

	seen, n := termination.Visible(&s.Status)
	restarts := int64(s.Status.RestartCount)
	n = t.resolve(p.UID, c, seen[:n], firstSight)
	if firstSight && podKnown {
		// A container whose whole life happened while the receiver watched (it started and
		// ended between two updates of a pod already watched, or its pod was created while
		// the receiver watched): its baseline is instance 0 before it ran, so the processor
		// counts each termination, and instances that ended unseen are reported as such.
		c.watchedSince, c.wholeLife = c.stamp(now), true
		t.push(c, Point{Instance: 0, Time: c.watchedSince})
		c.nextUnended = 0
		firstSight = false
	}
	if firstSight {
		return t.firstSight(p, c, seen[:n], restarts, now)
	}
	for _, term := range seen[:n] {
		if c.knows(term.Key()) {
			continue
		}
		if c.HasLast && term.Instance <= c.Last.Instance {
			// Another termination of an instance that already ended: the count was reset.
			obs.Dropped += t.reset(c, now)
		}
		obs.add(t.unseenUntil(c, term.Instance, now))
		c.remember(term)
		c.nextUnended = max(c.nextUnended, term.Instance+1)
		obs.news(term)
		t.killed(c, term)
		c.lastNews = c.Last.Key() == term.Key()
		obs.Dropped += t.push(c, point(term, c.stamp(now), c.watchedSince))
	}
	// Every instance before the current one has ended, seen or not.
	obs.add(t.unseenUntil(c, restarts, now))
	return obs
}

// resolve names the instance of an end the status alone cannot (see termination.MaybeLater),
// from what the receiver saw before, and drops a made-up end of an instance it then finds
// already ended. It returns how many of seen remain, oldest first.
func (t *Tracker) resolve(pod types.UID, c *Container, seen []termination.Termination, firstSight bool) int {
	var later bool
	for i := range seen {
		term := &seen[i]
		if !term.MaybeLater {
			continue
		}
		if c.knows(term.Key()) {
			// Seen before: the instance it was seen to end.
			if c.HasLast && c.Last.Key() == term.Key() {
				term.Instance = c.Last.Instance
				later = later || term.Instance == int64(c.RestartCount)
			}
			continue
		}
		switch {
		case firstSight:
			// After a restart with storage: the earlier run's newest reported end is the one
			// it reported; another end, where that run had reported the end of the instance the
			// status names, is the next one's. Else nothing seen before tells: the status' own
			// reading stands.
			ref := containerRef{pod, c.Name}
			reported, ok := t.unended[ref]
			switch end, known := t.reportedEnd[ref]; {
			case !ok:
			case known && end == term.ContainerID:
				term.MaybeLater = false
			case known && reported > term.Instance || reported > term.Instance && t.afterHorizon(*term):
				term.Instance++
				term.MaybeLater = false
			}
		case term.ContainerID == c.lastContainerID:
			// A container the receiver saw run: the instance it ran as.
			term.Instance = c.lastContainerInstance
		case c.lastContainerID != "" && c.lastContainerInstance == term.Instance:
			// The instance the status names ran another container: this one is the next's.
			term.Instance++
		case c.HasLast && c.Last.Instance >= term.Instance:
			// Another end of the previous instance was seen: this one is the next's.
			term.Instance++
		}
		later = later || term.Instance == int64(c.RestartCount)
	}
	if !later {
		return len(seen)
	}
	out := seen[:0]
	for _, term := range seen {
		if term.OutcomeUnknown() && term.ContainerID == "" && term.FinishedAt.IsZero() && term.Instance == int64(c.RestartCount) {
			// The status manager's made-up end of an instance that ended in back-off.
			continue
		}
		out = append(out, term)
	}
	return len(out)
}

// firstSight takes what a container's first status shows. It is history, but for what no
// receiver reported: terminations that ended after an earlier run of the receiver last looked
// and, when that run recorded up to which instance it had reported this container's ends, every
// instance from there on, seen or not.
func (t *Tracker) firstSight(p *Pod, c *Container, seen []termination.Termination, restarts int64, now time.Time) Observed {
	var obs Observed
	c.watchedSince = c.stamp(now)
	reported, resumed := t.unended[containerRef{p.UID, c.Name}]
	// More than one instance beyond the restart count: the count was reset since.
	resumed = resumed && reported <= restarts+1
	c.nextUnended = restarts
	if resumed {
		c.nextUnended = reported
	}
	// A mirror pod the kubelet created again while this run watched the one before shows the
	// static pod's ends, which this run may have reported on that one: its end times tell
	// nothing. (An end after the horizon cannot have been reported by the earlier run.)
	mirror, mirrored := t.mirrors[p.RuntimeUID]
	byTime := resumed || !mirrored || mirror == p.UID
	news := 0
	for _, term := range seen {
		c.remember(term)
		// An end after the horizon is news unless it claims to be in the future: a node clock
		// ahead of this one could make one the earlier run reported look later. An instance
		// whose end that run had not reported is news whatever its end time; an end the status
		// cannot tell of instance Instance from one of Instance+1 too.
		unreported := resumed && term.Instance >= reported || byTime && t.afterHorizon(term) && !term.FinishedAt.After(now)
		if !unreported {
			c.nextUnended = max(c.nextUnended, term.Instance+1)
			c.lastNews = false
			if term.OOMKilled() {
				obs.HistoryOOMKills++
			}
			continue
		}
		if resumed {
			obs.add(t.unseenUntil(c, term.Instance, now))
		}
		c.nextUnended = max(c.nextUnended, term.Instance+1)
		c.lastNews = true
		obs.news(term)
		t.killed(c, term)
		if news == 0 {
			// No receiver reported this end, so a 1 the processor holds at this instance is
			// another kill, of an older count of restarts: a 0 first tells it so.
			t.push(c, Point{Instance: term.Instance, Time: c.stamp(now)})
		}
		t.push(c, point(term, c.stamp(now), t.horizon))
		news++
	}
	unseen := 0
	if resumed {
		o := t.unseenUntil(c, restarts, now)
		obs.add(o)
		unseen = o.Unseen
	}
	switch {
	case news > 0:
		c.watchedSince = t.horizon
	case unseen == 0:
		t.push(c, c.latest(c.watchedSince))
	}
	return obs
}

// reset starts a new count of restarts (the node rebooted and the kubelet started the pod's
// containers afresh): terminations of the old count are no longer the latest state, and a 0 at
// instance 0 tells the processor that a new count begins, even where the old one stood at 0 too.
func (t *Tracker) reset(c *Container, now time.Time) int {
	c.HasLast = false
	c.nextUnended = 0
	c.forgetInstances()
	return t.push(c, Point{Instance: 0, Time: c.stamp(now)})
}

// unseenUntil reports each instance below end that ended without its termination being seen,
// as a point whose outcome is unknown: the processor can then bound what it cannot count.
func (t *Tracker) unseenUntil(c *Container, end int64, now time.Time) Observed {
	var obs Observed
	if skip := end - c.nextUnended - int64(t.maxPending); skip > 0 {
		// More than the pending limit holds: the oldest are dropped, as push would.
		obs.Unseen += int(skip)
		obs.Dropped += int(skip)
		c.nextUnended += skip
	}
	for ; c.nextUnended < end; c.nextUnended++ {
		obs.Unseen++
		obs.Dropped += t.push(c, Point{Instance: c.nextUnended, Unknown: true, Time: c.stamp(now)})
	}
	return obs
}

// killed keeps a termination reported as news for Kills if the OOM killer ended it, for
// InnerKills if it killed another process; beyond the pending limit the oldest is dropped, as
// its point is (and counted there).
func (t *Tracker) killed(c *Container, term termination.Termination) {
	switch {
	case term.OOMKilled():
		c.kills = t.keep(c.kills, term)
	case term.ProcessOOMKilled():
		c.innerKills = t.keep(c.innerKills, term)
	}
}

func (t *Tracker) keep(kills []termination.Termination, term termination.Termination) []termination.Termination {
	if len(kills) >= t.maxPending {
		drop := len(kills) - t.maxPending + 1
		kills = kills[:copy(kills, kills[drop:])]
	}
	return append(kills, term)
}

// point is the flag point of a termination reported as news: 1 if the OOM killer ended the
// instance, 0 if not, and no value if the kubelet no longer knew how it ended.
func point(term termination.Termination, at, since time.Time) Point {
	if term.OutcomeUnknown() {
		return Point{Instance: term.Instance, Unknown: true, Time: at}
	}
	return Point{Instance: term.Instance, OOMKilled: term.OOMKilled(), Time: at, Since: since}
}

// push queues a point, dropping the oldest beyond the limit; it returns how many it dropped.
func (t *Tracker) push(c *Container, p Point) int {
	dropped := 0
	if len(c.pending) >= t.maxPending {
		dropped = len(c.pending) - t.maxPending + 1
		c.pending = c.pending[:copy(c.pending, c.pending[dropped:])]
	}
	c.pending = append(c.pending, p)
	return dropped
}

func (p *Pod) container(name string) (c *Container, created bool) {
	for _, c := range p.Containers {
		if c.Name == name {
			return c, false
		}
	}
	c = &Container{Name: name}
	p.Containers = append(p.Containers, c)
	return c, true
}

func (p *Pod) hasPending() bool {
	for _, c := range p.Containers {
		if len(c.pending) > 0 {
			return true
		}
	}
	return false
}

// latest is the container's state as one point: 1 at the instance of its newest termination
// if the OOM killer ended it, else 0 at its current instance.
func (c *Container) latest(at time.Time) Point {
	// Only while no later instance was reported ended, seen or not: a point below one would
	// read as a new count of restarts.
	if c.HasLast && c.Last.OOMKilled() && c.Last.Instance+1 >= c.nextUnended {
		p := Point{Instance: c.Last.Instance, OOMKilled: true, Time: at}
		if c.lastNews {
			p.Since = c.watchedSince
		}
		return p
	}
	return Point{Instance: int64(c.RestartCount), Time: at}
}

// stamp returns now, or just after the container's previous point if now is not later.
func (c *Container) stamp(now time.Time) time.Time {
	if !now.After(c.lastTime) {
		now = c.lastTime.Add(time.Nanosecond)
	}
	c.lastTime = now
	return now
}

// isReset tells that a status belongs to a new count of restarts (the node rebooted): the
// restart count went back without a container this receiver knows; or, at a restart count that
// did not grow (a restart always makes it grow), the container is one it never saw where it
// knew another of the same instance. A status without a container is no reset: after the
// runtime lost the container the kubelet writes its default status with the old restart count,
// and the next container shows whether the count went on (from the container log folder) or
// started again.
func (c *Container) isReset(s *slimpod.Container) bool {
	id, restarts := s.Status.ContainerID, s.Status.RestartCount
	known := id != "" && (id == c.lastContainerID || c.knows(termination.Key{ContainerID: id}))
	switch {
	case restarts < c.RestartCount:
		return !known
	case restarts == c.RestartCount:
		// Only a second container of the same instance: the kubelet raises the restart count
		// of a running container the runtime lost, and the next container runs at that count.
		return id != "" && c.lastContainerID != "" && !known && int64(restarts) == c.lastContainerInstance
	}
	return false
}

func (c *Container) knows(k termination.Key) bool {
	for i := range min(c.nKnown, knownKeys) {
		if c.known[i] == k {
			return true
		}
	}
	return false
}

// forgetInstances forgets the ends known by their instance alone (made up, without a container
// ID): after a reset, their numbers name the instances of the new count.
func (c *Container) forgetInstances() {
	var kept [knownKeys]termination.Key
	n := 0
	for i := range min(c.nKnown, knownKeys) {
		if c.known[i].ContainerID != "" {
			kept[n] = c.known[i]
			n++
		}
	}
	c.known, c.nKnown = kept, n
}

func (c *Container) remember(term termination.Termination) {
	c.known[c.nKnown%knownKeys] = term.Key()
	c.nKnown++
	if !c.HasLast || c.Last.Before(term) {
		c.Last, c.HasLast = term, true
	}
}
