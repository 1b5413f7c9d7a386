// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package pipelinetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
)

// ---- the checker ----------------------------------------------------------------------------

type simSighting struct {
	gen, step int
	// first: the receiver saw the pod for the first time in this update; what it shows is
	// history to it. listed: that update was the list of a starting collector.
	first, listed bool
}

// simKnown names an instance in the series of a container.
type simKnown struct {
	key  string
	inst *simInstance
}

// simKnowledge is what the checker knows of one instance's way through the pipeline.
type simKnowledge struct {
	sightings []simSighting
	emitted   bool
	// emittedBefore: flagged at the instance before its own, at a first sight of the kubelet's
	// default status, which cannot tell the two apart.
	emittedBefore bool
	// accepted: a point flagging this OOM kill was accepted by the processor of the lineage.
	accepted map[int]bool
	// ambiguous: when the processor first took it, its state could still be the same instance
	// index of an older restart-count epoch, flagged: it could not tell the two apart, unless
	// it read a 0 in between (zeroBetween) as a reset.
	ambiguous   map[int]bool
	zeroBetween map[int]bool
}

type simObservation struct {
	gen, step, epoch int
	// backOffLost: the status was the kubelet's default status over a container that ended in
	// back-off.
	backOffLost bool
}

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
					case inst.index != index.Int() && !s.shifted(key, index.Int(), inst):
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

// isAmbiguous tells that index is the instance a baseline of key flagged as ambiguous.
func (s *simulation) isAmbiguous(key string, index int64) bool {
	flagged, ok := s.ambiguousAt[key]
	return ok && flagged == index
}

// shifted tells that the receiver named inst by the instance before its own, index, as it may
// for the end the kubelet's default status shows (docs/counting.md).
func (s *simulation) shifted(key string, index int64, inst *simInstance) bool {
	if inst.index != index+1 {
		return false
	}
	return s.isShiftedAt(key, index) || s.sawBackOffLost(key, s.stepTime(s.step))
}

// isShiftedAt tells that a point of key flagged index for the end of the instance after it.
func (s *simulation) isShiftedAt(key string, index int64) bool {
	at, ok := s.shiftedAt[key]
	return ok && at == index
}

// sawBackOffLost tells that the latest status of key the running receiver saw by ts was the
// kubelet's default status over a container that ended in back-off.
func (s *simulation) sawBackOffLost(key string, ts int64) bool {
	step := int((ts - podtest.T0.UnixNano()) / int64(time.Second))
	seen := false
	for _, o := range s.observed[key] {
		if o.gen == s.gen && o.step <= step {
			seen = o.backOffLost
		}
	}
	return seen
}

// nextIsOOM tells that the instance after index, at ts, is one the OOM killer ended.
func (s *simulation) nextIsOOM(key string, index, ts int64) bool {
	next, _, _ := s.resolve(key, index+1, ts)
	return next != nil && next.oom()
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
						if s.sawBackOffLost(key, p.ts) && s.nextIsOOM(key, p.index, p.ts) {
							// The flag may be the default status' end, named at the instance
							// before its own.
							next, _, _ := s.resolve(key, p.index+1, p.ts)
							s.knowledge(key, next).emittedBefore = true
						}
						switch {
						case !p.first && p.inst != nil && !p.inst.oom() && s.nextIsOOM(key, p.index, p.ts) &&
							(s.sawBackOffLost(key, p.ts) || s.isShiftedAt(key, p.index)):
							s.shiftedAt[key] = p.index
							p.inst, _, _ = s.resolve(key, p.index+1, p.ts)
						case s.staleOOM(key, p.index, p.inst):
							s.fail("after a restart-count reset the receiver repeats an OOM kill of the old count",
								"%s: the instance of the current count is %v, the receiver saw restart-count epoch %d already", p, p.inst, seenEpoch)
							return out
						case p.first && p.inst != nil && !p.inst.oom() && s.nextIsOOM(key, p.index, p.ts):
							// At first sight without storage, the kubelet's default status cannot
							// tell whether its lastState ended the instance it names or the next
							// one (docs/counting.md): a baseline, history either way.
							s.ambiguousAt[key] = p.index
							next, _, _ := s.resolve(key, p.index+1, p.ts)
							s.knowledge(key, next).emittedBefore = true
						case !p.first && p.inst != nil && !p.inst.oom() && s.isAmbiguous(key, p.index):
							// The latest state repeating that baseline.
						case p.inst == nil || !p.inst.oom():
							s.fail("a point flags an OOM kill that did not happen", "%s: the instance is %v", p, p.inst)
							return out
						case p.inst.epoch < seenEpoch:
							s.fail("after a restart-count reset the receiver repeats an OOM kill of the old count",
								"%s: the receiver saw restart-count epoch %d already", p, seenEpoch)
							return out
						}
						s.knowledge(key, p.inst).emitted = true
					}
					if p.unknown && (p.inst == nil || !p.inst.ended) {
						s.fail("an instance that did not end is reported as ended unseen", "%s: the instance is %v", p, p.inst)
						return out
					}
					out = append(out, p)
					s.emitted[key] = append(s.emitted[key], p)
					if due, ok := s.resetDue[key]; ok && p.index == 0 && p.flag == 0 && !p.unknown && p.ts >= s.stepTime(due) {
						delete(s.resetDue, key)
					}
				}
			}
		}
	}
	for _, key := range sortedKeys(s.resetDue) {
		s.fail("a reset the receiver could tell sent no 0 at instance 0",
			"%s: the statuses it saw at step %d show a new count of restarts", key, s.resetDue[key])
		break
	}
	return out
}

// stepTime is the time of step on the simulation's clock, in Unix nanoseconds.
func (s *simulation) stepTime(step int) int64 {
	return podtest.T0.Add(time.Duration(step) * time.Second).UnixNano()
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
// saw last, and so the restart-count epoch it can tell its index is of. An index that epoch has
// not reached is one of a newer epoch the receiver could not tell from the count going on, else
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
	// After a reset the receiver could not tell, an index is one of the new epoch if the receiver
	// saw that instance end, or if the epoch it can tell has not reached it.
	var found *simInstance
	for e := epoch; e <= c.epoch; e++ {
		inst := c.instance(e, index)
		switch {
		case inst == nil:
		case s.seenEnd(key, inst, step):
			return inst, e, epoch
		case found == nil:
			found = inst
		}
	}
	if found != nil {
		return found, found.epoch, epoch
	}
	for e := epoch - 1; e >= 0; e-- {
		if inst := c.instance(e, index); inst != nil {
			return inst, e, epoch
		}
	}
	return nil, epoch, epoch
}

// seenEnd tells whether the running receiver saw a status that showed inst's end by step.
func (s *simulation) seenEnd(key string, inst *simInstance, step int) bool {
	k := s.known[simKnown{key, inst}]
	if k == nil {
		return false
	}
	return slices.ContainsFunc(k.sightings, func(sg simSighting) bool { return sg.gen == s.gen && sg.step <= step })
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
	if s.ev != nil {
		s.ev.check(s.sink.AllMetrics())
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
			k := s.knowledge(p.key, p.inst)
			if !k.accepted[s.lineage] {
				k.ambiguous[s.lineage], k.zeroBetween[s.lineage] = s.ambiguous(p)
			}
			k.accepted[s.lineage] = true
		}
		s.acceptedSeq[p.key] = append(s.acceptedSeq[p.key], p)
		s.seriesOf(p.key).take(p, s.containers[p.key])
	}
	for _, key := range order {
		o := last[key]
		s.exported[key] = simExported{lineage: s.lineage, start: o.start, value: o.value}
		s.check(key, o.value)
	}
}

// simSeries is the checker's model of the processor's state of one series (the counting rule of
// docs/counting.md): the instance it stands at and whether that one is accounted for, and the
// instances it took as unattributed, nil where it skipped an index of an epoch it could not
// tell.
type simSeries struct {
	started      bool
	epoch        int
	index        int64
	high         bool
	last         int64
	unattributed []*simInstance
}

func (s *simulation) seriesOf(key string) *simSeries {
	m := s.series[key]
	if m == nil {
		m = &simSeries{}
		s.series[key] = m
	}
	return m
}

// take applies a point the processor accepted.
func (m *simSeries) take(p *simPoint, c *simContainer) {
	high := p.flag == 1 || p.unknown
	switch {
	case !m.started:
		m.started, m.epoch, m.index, m.high, m.last = true, p.epoch, p.index, high, p.ts
		return
	case p.ts == m.last && p.index == m.index:
		m.same(p)
		return
	case p.ts < m.last, p.ts == m.last && p.index < m.index:
		return
	}
	m.last = p.ts
	switch {
	case p.index == m.index && m.high && !high:
		// A 0 where it held a 1: a new epoch at the same index.
		m.epoch, m.high = p.epoch, false
		return
	case p.index == m.index:
		m.same(p)
		return
	case p.index > m.index:
		for i := m.index + 1; i < p.index; i++ {
			var skipped *simInstance
			if c != nil && p.epoch == m.epoch {
				skipped = c.instance(m.epoch, i)
			}
			m.unattributed = append(m.unattributed, skipped)
		}
	}
	if p.unknown {
		m.unattributed = append(m.unattributed, p.inst)
	}
	m.epoch, m.index, m.high = p.epoch, p.index, high
}

func (m *simSeries) same(p *simPoint) {
	switch {
	case m.high:
	case p.unknown:
		m.high = true
		m.unattributed = append(m.unattributed, p.inst)
	case p.flag == 1:
		m.high = true
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

// check compares a container's exported count with the truth: never more than its OOM kills
// since the history horizon, never less than those that must count; upper_bound adds each
// instance the processor took as unattributed, lower_bound none. Where nothing was lost the
// count is exact.
func (s *simulation) check(key string, count int64) {
	c := s.containers[key]
	if c == nil {
		s.fail("a count for a container that never existed", "%s", key)
		return
	}
	s.checked++
	truth, horizon := s.truthOf(key, c)
	var must []*simInstance
	var why []string
	for _, inst := range truth {
		if reason, counts := s.mustCount(key, inst); counts {
			must = append(must, inst)
			why = append(why, inst.String()+": "+reason)
		}
	}
	slots := s.seriesOf(key).unattributed
	slotted, extra := s.slotted(key, truth)
	upper, lower, exact := int64(len(truth)), int64(len(must)), int64(len(truth)-len(slotted))
	if s.policy == oomcounterprocessor.GapPolicyUpperBound {
		for _, inst := range slotted {
			if !slices.Contains(must, inst) {
				must = append(must, inst)
				why = append(why, inst.String()+": unattributed, and upper_bound counts it")
			}
		}
		upper, lower, exact = upper+extra, int64(len(must))+extra, int64(len(truth))+extra
	}
	if s.mirrorKeys[key] {
		defer s.checkStatic(c)
	}
	if count > upper {
		s.fail("counted more OOM kills than happened", "%s: count %d, %d OOM kills %v since the history horizon (step %d), unattributed %v (%s)",
			key, count, len(truth), truth, horizon, slots, s.policy)
		return
	}
	if count < lower {
		category := "missed an OOM kill that was " + likeliestMiss(why)
		if len(why) == 0 {
			category = "missed an unattributed instance under upper_bound"
		}
		s.fail(category, "%s: count %d, but these %d must count: %s, and %d unattributed (all %d since the horizon: %v; unattributed %v)",
			key, count, len(must), strings.Join(why, "; "), extra, len(truth), truth, slots)
		return
	}
	if s.reliable && count != exact {
		// Every status was written and delivered, every batch too: nothing excuses a difference.
		s.fail("not exact although nothing was lost", "%s: count %d, %d OOM kills %v since the history horizon (step %d), unattributed %v (%s)",
			key, count, len(truth), truth, horizon, slots, s.policy)
	}
}

// truthOf are the OOM kills of c that series key shows, if a receiver saw them: those that ended
// after its history horizon and, for a mirror pod that was deleted, before it went.
func (s *simulation) truthOf(key string, c *simContainer) (truth []*simInstance, horizon int) {
	horizon, ok := s.horizon[key]
	switch {
	case ok:
	case s.mirrorKeys[key]:
		// No status of this mirror pod reached a receiver: all it shows is to come.
		horizon = math.MaxInt
	default:
		horizon = -1
	}
	until, gone := s.until[key]
	for _, inst := range c.all {
		if inst.oom() && inst.endStep > horizon && (!gone || inst.endStep <= until) {
			truth = append(truth, inst)
		}
	}
	return truth, horizon
}

// slotted are the instances the processor took as unattributed for key that are OOM kills of
// its truth, each once; extra counts the others, which under upper_bound count as kills too.
func (s *simulation) slotted(key string, truth []*simInstance) (slotted []*simInstance, extra int64) {
	for _, inst := range s.seriesOf(key).unattributed {
		switch {
		case inst == nil || !slices.Contains(truth, inst) || slices.Contains(slotted, inst):
			extra++
		case s.known[simKnown{key, inst}] != nil && s.known[simKnown{key, inst}].accepted[s.lineage]:
			// Flagged at the instance before its own, and then unattributed at its own: under
			// upper_bound the one kill counts twice (docs/counting.md).
			extra++
		default:
			slotted = append(slotted, inst)
		}
	}
	return slotted, extra
}

// checkStatic checks that the container of a static pod counts each OOM kill once over all the
// mirror pods it was reported under: their counts together never exceed its kills that any of
// them can show, plus under upper_bound the unattributed instances that were no kill.
func (s *simulation) checkStatic(c *simContainer) {
	var total, extra int64
	var union []*simInstance
	var keys []string
	for _, key := range sortedKeys(s.containers) {
		e, ok := s.exported[key]
		if s.containers[key] != c || !s.mirrorKeys[key] || !ok || e.lineage != s.lineage {
			continue
		}
		keys = append(keys, fmt.Sprintf("%s=%d", key, e.value))
		total += e.value
		truth, _ := s.truthOf(key, c)
		for _, inst := range truth {
			if !slices.Contains(union, inst) {
				union = append(union, inst)
			}
		}
		if s.policy == oomcounterprocessor.GapPolicyUpperBound {
			_, x := s.slotted(key, truth)
			extra += x
		}
	}
	if total > int64(len(union))+extra {
		s.fail("an OOM kill counted on two mirror pods", "%s/%s: counts %v, %d OOM kills %v, %d unattributed that were none",
			c.pod.static, c.name, keys, len(union), union, extra)
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
	k := s.known[simKnown{key, inst}]
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
	case atFirstSight && firstSightListed && s.genLookedAt > 0 &&
		(inst.endStep <= s.genLookedAt || s.genLookedAtStart && inst.endSecond() <= s.genLookedAt):
		// The restarted receiver takes as news only what ended after it last looked; a kill
		// that ended before, but whose status reached no receiver in time (a status write
		// merged or late, a watch down), is history to it; so is one in the second a receiver
		// started in whose record holds no end, by the node's clock.
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
	case k.emittedBefore && !k.accepted[s.lineage]:
		return "reported at the instance before its own, at a first sight of the default status, in batches that were lost", false
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

// finish brings everything to light: the collector runs, the watch is up, the kubelet wrote
// every status, and two batches reach the processor. Then every container is checked,
// including those never exported.
