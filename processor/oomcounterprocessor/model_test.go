// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadatatest"
)

// The model-based test drives the processor with random but true container histories, sampled
// the way the k8s_container receiver samples them, and delivered the way real pipelines deliver
// batches: some dropped (the first one too), some twice, some late, with collector restarts and
// node reboots (restart counts reset) in between. A reference model sees every point the
// processor is given, in the same order, and knows the truth behind it: which container instance
// of which restart-count epoch the point is about. After every batch it checks, for every run:
//   - within one StartTimestamp the counter never decreases;
//   - the counter is exactly `seen` under lower_bound, and within [seen, seen+unattributed]
//     under upper_bound, where seen is the number of distinct instances whose OOM kill reached
//     the processor after the series' baseline (its first accepted point: an OOM before it,
//     lost with a dropped first batch or not, is history), and unattributed the number of
//     instances after the baseline whose outcome never reached it.

// instance names a container instance in the truth: the restart-count epoch and the restart
// index within it.
type truthInstance struct {
	epoch int
	index int64
}

// container is the truth: instances run one after the other, each ends OOM-killed or not.
type container struct {
	uid      string
	epoch    int
	instance int64  // the running instance in the current epoch
	ended    []bool // ended[i]: instance i of the current epoch was OOM-killed
	pending  []int64
	// the receiver's view, lost when the collector restarts
	seen        bool
	sticky      [2]int64 // last point emitted: occurrence, flag
	stickyTruth truthInstance
	// reset: the restart count was reset and the next scrape shows it; that scrape must reach
	// the processor for the reset to be visible at all (a point of the new epoch with an index
	// above the old one is indistinguishable from a jump).
	reset bool
}

type modelPoint struct {
	uid       string
	ts        uint64
	occ, flag int64
	truth     truthInstance
}

// reference is what a perfect counter following the processor's rules reaches for one series.
type reference struct {
	started  bool
	baseline truthInstance
	last     uint64 // timestamp of the latest accepted point
	latest   truthInstance
	counted  map[truthInstance]bool // instances whose OOM reached the processor after the baseline
	outcome  map[truthInstance]bool // instances after the baseline whose outcome reached it
	highest  map[int]int64          // per epoch, the highest index reached
}

func (r *reference) apply(p modelPoint) {
	if !r.started {
		r.started, r.baseline, r.last, r.latest = true, p.truth, p.ts, p.truth
		r.counted, r.outcome, r.highest = map[truthInstance]bool{}, map[truthInstance]bool{}, map[int]int64{p.truth.epoch: p.truth.index}
		if p.flag == 0 {
			// The baseline instance is still running (or ended without OOM): its OOM would be news.
			r.baseline.index--
		}
		return
	}
	if p.ts < r.last {
		return // out of order: dropped
	}
	r.last, r.latest = p.ts, p.truth
	if after(p.truth, r.baseline) {
		r.outcome[p.truth] = true
		if p.flag == 1 {
			r.counted[p.truth] = true
		}
	}
	r.highest[p.truth.epoch] = max(r.highest[p.truth.epoch], p.truth.index)
}

func after(a, b truthInstance) bool {
	return a.epoch > b.epoch || a.epoch == b.epoch && a.index > b.index
}

// unattributed counts the instances after the baseline, up to the latest one reached, whose
// outcome never reached the processor: upper_bound may count each of them.
func (r *reference) unattributed() uint64 {
	var n uint64
	for epoch, top := range r.highest {
		first := int64(0)
		if epoch == r.baseline.epoch {
			first = r.baseline.index + 1
		}
		for i := first; i <= top; i++ {
			if !r.outcome[truthInstance{epoch: epoch, index: i}] {
				n++
			}
		}
	}
	return n
}

type modelRun struct {
	rng        *rand.Rand
	containers []*container
	refs       map[string]*reference
	now        uint64
	// mustDeliver: a reset is not visible yet, so the next batch is neither dropped nor late.
	mustDeliver bool
}

// live advances the world: the running instance of some containers ends, and now and then a
// node reboots and resets a container's restart count.
func (m *modelRun) live() {
	for _, c := range m.containers {
		if c.reset {
			continue // nothing ends until the reset was seen
		}
		// Only a reset to an index below what the processor holds is visible as one.
		if ref := m.refs[c.uid]; ref.started && ref.latest.epoch == c.epoch && ref.latest.index >= 1 && m.rng.IntN(25) == 0 {
			// The node reboots: restart counts start again at 0, and the receiver sees the
			// container anew, its instance 0 running.
			c.epoch++
			c.instance, c.ended, c.pending = 0, nil, c.pending[:0]
			c.seen, c.reset = false, true
			continue
		}
		for m.rng.IntN(3) == 0 {
			c.ended = append(c.ended, m.rng.IntN(5) < 3)
			if c.seen {
				c.pending = append(c.pending, c.instance)
			}
			c.instance++
		}
	}
}

// scrape samples every container as the receiver does: a baseline at first sight, then one
// point per termination observed since the last scrape, oldest first, else the last point again.
func (m *modelRun) scrape() []modelPoint {
	var pts []modelPoint
	emit := func(c *container, occ, flag int64) {
		m.now += 10
		c.sticky = [2]int64{occ, flag}
		c.stickyTruth = truthInstance{epoch: c.epoch, index: occ}
		pts = append(pts, modelPoint{uid: c.uid, ts: m.now, occ: occ, flag: flag, truth: c.stickyTruth})
	}
	for _, c := range m.containers {
		if c.reset {
			// This scrape shows the reset (a lower restart count at a newer time): it must
			// reach the processor, or the reset is invisible and the counts of the two epochs
			// mix in ways no counter can untangle.
			m.mustDeliver = true
			c.reset = false
		}
		switch {
		case !c.seen:
			c.seen = true
			if n := len(c.ended); n > 0 && c.ended[n-1] {
				emit(c, int64(n-1), 1)
			} else {
				emit(c, c.instance, 0)
			}
		case len(c.pending) > 0:
			for i, inst := range c.pending {
				// A relisting informer can merge updates away: an older termination of the
				// batch may never be observed. The latest one always is.
				if i < len(c.pending)-1 && m.rng.IntN(10) == 0 {
					continue
				}
				flag := int64(0)
				if c.ended[inst] {
					flag = 1
				}
				emit(c, inst, flag)
			}
			c.pending = c.pending[:0]
		default:
			m.now += 10
			pts = append(pts, modelPoint{uid: c.uid, ts: m.now, occ: c.sticky[0], flag: c.sticky[1], truth: c.stickyTruth})
		}
	}
	return pts
}

func (m *modelRun) batch(pts []modelPoint) pmetric.Metrics {
	md := pmetric.NewMetrics()
	byUID := map[string]pmetric.NumberDataPointSlice{}
	for _, p := range pts {
		dps, ok := byUID[p.uid]
		if !ok {
			rm := md.ResourceMetrics().AppendEmpty()
			rm.Resource().Attributes().PutStr("k8s.pod.uid", p.uid)
			rm.Resource().Attributes().PutStr("k8s.container.name", "app")
			mt := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
			mt.SetName("k8s.container.oom_killed")
			dps = mt.SetEmptyGauge().DataPoints()
			byUID[p.uid] = dps
		}
		dp := dps.AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(p.ts))
		dp.SetIntValue(p.flag)
		dp.Attributes().PutInt("k8s.container.restart_count", p.occ)
	}
	return md
}

type counterView struct {
	start, value uint64
	points       int
}

func TestModel(t *testing.T) {
	for _, policy := range []GapPolicy{GapPolicyLowerBound, GapPolicyUpperBound} {
		for seed := range uint64(150) {
			t.Run(fmt.Sprintf("%s/seed=%d", policy, seed), func(t *testing.T) {
				t.Parallel()
				runModel(t, policy, seed)
			})
		}
	}
}

// delivery is a batch on its way: the points, as the reference model sees them, and the batch.
type delivery struct {
	pts []modelPoint
	md  pmetric.Metrics
}

func runModel(t *testing.T, policy GapPolicy, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6f6f6d))
	m := &modelRun{rng: rng}
	for i := range 3 {
		c := &container{uid: fmt.Sprintf("pod-%d", i)}
		// Some containers have a history before the collector first sees them.
		for range rng.IntN(3) {
			c.ended = append(c.ended, rng.IntN(2) == 0)
			c.instance++
		}
		m.containers = append(m.containers, c)
	}

	cfg := createDefaultConfig().(*Config)
	cfg.GapPolicy = policy
	storageID := component.MustNewID("memory")
	cfg.Storage = &storageID
	host := &storageHost{ext: map[component.ID]component.Component{storageID: newMemoryStorage()}}
	tt := componenttest.NewTelemetry()
	defer func() { require.NoError(t, tt.Shutdown(context.Background())) }()
	start := func() *counterProcessor {
		p, err := newCounterProcessor(metadatatest.NewSettings(tt), cfg)
		require.NoError(t, err)
		require.NoError(t, p.start(context.Background(), host))
		return p
	}
	p := start()
	defer func() { require.NoError(t, p.shutdown(context.Background())) }()

	views := map[string]*counterView{}
	refs := map[string]*reference{}
	for _, c := range m.containers {
		refs[c.uid] = &reference{}
	}
	m.refs = refs
	deliver := func(d delivery) {
		for _, pt := range d.pts {
			refs[pt.uid].apply(pt)
		}
		out, err := p.processMetrics(context.Background(), d.md)
		require.NoError(t, err)
		for _, rm := range out.ResourceMetrics().All() {
			uid, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
			for _, sm := range rm.ScopeMetrics().All() {
				for _, mt := range sm.Metrics().All() {
					require.Equal(t, "k8s.container.oom_kills", mt.Name())
					for _, dp := range mt.Sum().DataPoints().All() {
						v := views[uid.Str()]
						if v == nil {
							v = &counterView{start: uint64(dp.StartTimestamp())}
							views[uid.Str()] = v
						}
						require.Equal(t, v.start, uint64(dp.StartTimestamp()), "%s: the start never changes with storage", uid.Str())
						require.GreaterOrEqual(t, uint64(dp.IntValue()), v.value, "%s: the counter decreased", uid.Str())
						v.value = uint64(dp.IntValue())
						v.points++
					}
				}
			}
		}
	}
	check := func(when string) {
		for _, c := range m.containers {
			v, ref := views[c.uid], refs[c.uid]
			if v == nil {
				require.False(t, ref.started, "%s: the processor got points but emitted none", c.uid)
				continue
			}
			seen := uint64(len(ref.counted))
			if policy == GapPolicyLowerBound {
				require.Equal(t, seen, v.value, "%s %s: lower_bound counts exactly the OOM kills that reached it", c.uid, when)
			} else {
				require.GreaterOrEqual(t, v.value, seen, "%s %s: upper_bound counts at least what reached it", c.uid, when)
				require.LessOrEqual(t, v.value, seen+ref.unattributed(), "%s %s: upper_bound counts at most seen + unattributed", c.uid, when)
			}
		}
	}

	var late []delivery
	for step := range 40 {
		m.live()
		pts := m.scrape()
		d := delivery{pts: pts, md: m.batch(pts)}
		must := m.mustDeliver
		m.mustDeliver = false
		switch r := rng.IntN(10); {
		case must || r < 6:
			deliver(d)
		case r == 6:
			// dropped on the way
		case r == 7:
			deliver(d)
			late = append(late, delivery{pts: pts, md: m.batch(pts)}) // delivered twice
		default:
			late = append(late, d) // delivered after the next batch
		}
		if len(late) > 0 && rng.IntN(2) == 0 {
			deliver(late[0])
			late = late[1:]
		}
		if rng.IntN(15) == 0 {
			// The collector restarts: the processor's state goes through storage, and the
			// receiver sees every container anew.
			require.NoError(t, p.shutdown(context.Background()))
			p = start()
			for _, c := range m.containers {
				c.seen, c.pending = false, c.pending[:0]
			}
		}
		check(fmt.Sprintf("after step %d", step))
	}
	// A last, reliable scrape carries every total.
	pts := m.scrape()
	deliver(delivery{pts: pts, md: m.batch(pts)})
	check("at the end")
}
