// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command example runs the oom_counter processor on a simulated pod: three containers scraped
// every ten seconds, one leaking memory until the OOM killer ends it, one crashing with an
// error, one steady. Along the way one batch is lost and one arrives twice. It
// prints what the receiver reported and the exact counter the processor made of it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor"
)

// report is one container's flag in one scrape.
type report struct {
	container string
	instance  int64
	oom       bool
}

// scrapes is the story: what the receiver reported at each scrape, oldest first.
var scrapes = [][]report{
	{{"leaky", 0, false}, {"crashy", 0, false}, {"steady", 0, false}},
	{{"leaky", 0, true}, {"crashy", 0, false}, {"steady", 0, false}},
	{{"leaky", 0, true}, {"crashy", 0, false}, {"steady", 0, false}},
	{{"leaky", 1, true}, {"crashy", 0, false}, {"steady", 0, false}},
	{{"leaky", 1, true}, {"crashy", 1, false}, {"steady", 0, false}},
	{{"leaky", 2, true}, {"leaky", 3, true}, {"crashy", 1, false}, {"steady", 0, false}},
	{{"leaky", 3, true}, {"crashy", 2, false}, {"steady", 0, false}},
}

// fate says what happens to a scrape's batch on its way to the processor.
var fate = map[int]string{
	2: "lost",
	4: "twice",
}

func main() {
	if _, err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

// run tells the story to w and returns each container's final count.
func run(w io.Writer) (map[string]int64, error) {
	ctx := context.Background()
	factory := oomcounterprocessor.NewFactory()
	sink := new(consumertest.MetricsSink)
	p, err := factory.CreateMetrics(ctx, processortest.NewNopSettings(factory.Type()), factory.CreateDefaultConfig(), sink)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx, componenttest.NewNopHost()); err != nil {
		return nil, err
	}
	defer func() { _ = p.Shutdown(ctx) }()

	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	out := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	final := map[string]int64{}
	// The tabwriter buffers: a write error shows up at Flush.
	_, _ = fmt.Fprintln(out, "scrape\tbatch\tcontainer\treported (restart_count: oom_killed)\tk8s.container.oom_kills")
	for i, reports := range scrapes {
		at := start.Add(time.Duration(i) * 10 * time.Second)
		md := batch(at, reports)
		deliveries := 1
		switch fate[i] {
		case "lost":
			deliveries = 0
		case "twice":
			deliveries = 2
		}
		before := len(sink.AllMetrics())
		for range deliveries {
			again := pmetric.NewMetrics()
			md.CopyTo(again)
			if err := p.ConsumeMetrics(ctx, again); err != nil {
				return nil, err
			}
		}
		totals := counters(sink.AllMetrics()[before:], final)
		status := map[int]string{0: "lost", 2: "sent twice"}[deliveries]
		if status == "" {
			status = "delivered"
		}
		for _, name := range []string{"leaky", "crashy", "steady"} {
			_, _ = fmt.Fprintf(out, "%s\t%s\t%s\t%s\t%s\n", at.Format("15:04:05"), status, name, reported(reports, name), totals[name])
		}
	}
	if err := out.Flush(); err != nil {
		return nil, err
	}
	_, err = fmt.Fprintln(w, "\nleaky was OOM-killed four times after it was first seen (instances 0 to 3); crashy's exits were errors, not OOM kills.")
	return final, err
}

func batch(at time.Time, reports []report) pmetric.Metrics {
	md := pmetric.NewMetrics()
	for j, r := range reports {
		rm := md.ResourceMetrics().AppendEmpty()
		attrs := rm.Resource().Attributes()
		attrs.PutStr("k8s.namespace.name", "shop")
		attrs.PutStr("k8s.pod.name", "cart-7d9c")
		attrs.PutStr("k8s.pod.uid", "1f0c2a8e-5b1e-4c5e-9a3e-0c9d3b2f7a11")
		attrs.PutStr("k8s.container.name", r.container)
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("k8s.container.oom_killed")
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		// Points of one container are a millisecond apart within a scrape, oldest first.
		dp.SetTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(j) * time.Millisecond)))
		if r.oom {
			dp.SetIntValue(1)
		} else {
			dp.SetIntValue(0)
		}
		dp.Attributes().PutInt("k8s.container.restart_count", r.instance)
	}
	return md
}

func reported(reports []report, container string) string {
	var s string
	for _, r := range reports {
		if r.container != container {
			continue
		}
		flag := 0
		if r.oom {
			flag = 1
		}
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%d: %d", r.instance, flag)
	}
	return s
}

// counters returns, per container, the counter values the processor emitted in these batches,
// and keeps the latest one in final.
func counters(batches []pmetric.Metrics, final map[string]int64) map[string]string {
	values := map[string][]int64{}
	for _, md := range batches {
		for _, rm := range md.ResourceMetrics().All() {
			name, _ := rm.Resource().Attributes().Get("k8s.container.name")
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != "k8s.container.oom_kills" {
						continue
					}
					for _, dp := range m.Sum().DataPoints().All() {
						values[name.Str()] = append(values[name.Str()], dp.IntValue())
						final[name.Str()] = dp.IntValue()
					}
				}
			}
		}
	}
	out := map[string]string{}
	for name, vs := range values {
		sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		out[name] = fmt.Sprint(vs)
	}
	for _, name := range []string{"leaky", "crashy", "steady"} {
		if out[name] == "" {
			out[name] = "-"
		}
	}
	return out
}
