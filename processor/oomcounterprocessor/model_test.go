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
// batches: some dropped, some twice, some late, with collector restarts in between. After every
// batch it checks what a user of the counter relies on:
//   - within one StartTimestamp the counter never decreases;
//   - under lower_bound it never exceeds the number of OOM kills that really happened after the
//     container was first seen;
//   - when no batch was lost or late and no termination was missed, it equals that number.

// container is the truth: instances run one after the other, each ends OOM-killed or not.
type container struct {
	uid      string
	instance int64   // the running instance
	ended    []bool  // ended[i]: instance i was OOM-killed
	oomsSeen int     // OOM kills after first sight: the count a perfect counter reaches
	pending  []int64 // instances ended since the receiver's last look
	// firstSeen: the collector has seen the container once; OOM kills from then on are news.
	firstSeen bool
	// the receiver's view, lost when the collector restarts
	seen   bool
	sticky [2]int64 // last point emitted: occurrence, flag
}

type modelPoint struct {
	uid       string
	ts        uint64
	occ, flag int64
}

type modelRun struct {
	rng           *rand.Rand
	policy        GapPolicy
	containers    []*container
	now           uint64
	lossy, missed bool
}

// live advances the world: the running instance of some containers ends.
func (m *modelRun) live() {
	for _, c := range m.containers {
		for m.rng.IntN(3) == 0 {
			oom := m.rng.IntN(5) < 3
			c.ended = append(c.ended, oom)
			if oom && c.firstSeen {
				c.oomsSeen++
			}
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
		pts = append(pts, modelPoint{uid: c.uid, ts: m.now, occ: occ, flag: flag})
	}
	for _, c := range m.containers {
		switch {
		case !c.seen:
			c.seen, c.firstSeen = true, true
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
					m.missed = true
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
			emit(c, c.sticky[0], c.sticky[1])
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
	for _, policy := range []GapPolicy{GapLowerBound, GapUpperBound} {
		for seed := range uint64(150) {
			t.Run(fmt.Sprintf("%s/seed=%d", policy, seed), func(t *testing.T) {
				t.Parallel()
				runModel(t, policy, seed)
			})
		}
	}
}

func runModel(t *testing.T, policy GapPolicy, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6f6f6d))
	// One run in three is clean: nothing lost, late or missed, so the count must be exact.
	clean := seed%3 == 0
	m := &modelRun{rng: rng, policy: policy}
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
	deliver := func(md pmetric.Metrics) {
		out, err := p.processMetrics(context.Background(), md)
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

	var late []pmetric.Metrics
	for range 40 {
		m.live()
		pts := m.scrape()
		switch r := rng.IntN(10); {
		case clean || r < 6:
			deliver(m.batch(pts))
		case r == 6:
			m.lossy = true // dropped on the way
		case r == 7:
			deliver(m.batch(pts))
			late = append(late, m.batch(pts)) // delivered twice
		default:
			m.lossy = true
			late = append(late, m.batch(pts)) // delivered after the next batch
		}
		if len(late) > 0 && rng.IntN(2) == 0 {
			deliver(late[0])
			late = late[1:]
		}
		if !clean && rng.IntN(15) == 0 {
			// The collector restarts: the processor's state goes through storage, and the
			// receiver sees every container anew.
			m.lossy = true
			require.NoError(t, p.shutdown(context.Background()))
			p = start()
			for _, c := range m.containers {
				c.seen, c.pending = false, c.pending[:0]
			}
		}
		for _, c := range m.containers {
			v := views[c.uid]
			if v == nil {
				continue
			}
			if policy == GapLowerBound {
				require.LessOrEqual(t, v.value, uint64(c.oomsSeen), "%s: counted more OOM kills than happened", c.uid)
			}
		}
	}
	// A last, reliable scrape carries every total.
	deliver(m.batch(m.scrape()))
	for _, c := range m.containers {
		v := views[c.uid]
		require.NotNil(t, v, c.uid)
		switch {
		case clean && !m.missed:
			require.Equal(t, uint64(c.oomsSeen), v.value, "%s: a clean run counts exactly", c.uid)
		case policy == GapLowerBound:
			require.LessOrEqual(t, v.value, uint64(c.oomsSeen), c.uid)
		}
	}
}
