// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package otlpsink is an OTLP/gRPC backend that keeps everything it receives in memory, metrics
// and logs, so the end-to-end tests can assert on what a collector really exported over the wire.
package otlpsink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

// Point is one number data point as received.
type Point struct {
	Resource map[string]string
	Attrs    map[string]string
	Start    time.Time
	Time     time.Time
	Value    float64
	// Received is when the batch holding the point arrived.
	Received time.Time
}

// Record is one log record as received.
type Record struct {
	Resource  map[string]string
	Attrs     map[string]string
	EventName string
	Body      string
	// Severity is the severity text, SeverityNumber its number.
	Severity       string
	SeverityNumber int32
	Time           time.Time
	Observed       time.Time
	// Received is when the batch holding the record arrived.
	Received time.Time
}

type batch struct {
	md       pmetric.Metrics
	received time.Time
}

type logBatch struct {
	ld       plog.Logs
	received time.Time
}

// Sink receives OTLP/gRPC on an address and remembers every metric and log batch.
type Sink struct {
	endpoint string

	mu         sync.Mutex
	batches    []batch
	logBatches []logBatch
	// receiver is the one OTLP receiver that takes both signals.
	receiver receiver.Metrics
}

// New returns a sink for endpoint (host:port); Start opens it.
func New(endpoint string) *Sink {
	return &Sink{endpoint: endpoint}
}

// Endpoint is where the sink listens.
func (s *Sink) Endpoint() string { return s.endpoint }

// Start opens the endpoint. A sink can be stopped and started again, as a backend that goes
// down and comes back; what it received before is kept.
func (s *Sink) Start(ctx context.Context) error {
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.GRPC.GetOrInsertDefault().NetAddr.Endpoint = s.endpoint
	cfg.Protocols.HTTP = configoptional.None[otlpreceiver.HTTPConfig]() // gRPC only
	next, err := consumer.NewMetrics(s.consume)
	if err != nil {
		return err
	}
	nextLogs, err := consumer.NewLogs(s.consumeLogs)
	if err != nil {
		return err
	}
	set := receivertest.NewNopSettings(f.Type())
	r, err := f.CreateMetrics(ctx, set, cfg, next)
	if err != nil {
		return err
	}
	// Created with the same configuration, the logs receiver is the metrics one: one server,
	// started and shut down once.
	if _, err := f.CreateLogs(ctx, set, cfg, nextLogs); err != nil {
		return err
	}
	if err := r.Start(ctx, componenttest.NewNopHost()); err != nil {
		return fmt.Errorf("otlp sink on %s: %w", s.endpoint, err)
	}
	s.mu.Lock()
	s.receiver = r
	s.mu.Unlock()
	return nil
}

// Stop closes the endpoint.
func (s *Sink) Stop(ctx context.Context) error {
	s.mu.Lock()
	r := s.receiver
	s.receiver = nil
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.Shutdown(ctx)
}

func (s *Sink) consume(_ context.Context, md pmetric.Metrics) error {
	c := pmetric.NewMetrics()
	md.CopyTo(c)
	s.mu.Lock()
	s.batches = append(s.batches, batch{md: c, received: time.Now()})
	s.mu.Unlock()
	return nil
}

func (s *Sink) consumeLogs(_ context.Context, ld plog.Logs) error {
	c := plog.NewLogs()
	ld.CopyTo(c)
	s.mu.Lock()
	s.logBatches = append(s.logBatches, logBatch{ld: c, received: time.Now()})
	s.mu.Unlock()
	return nil
}

// Records returns, in arrival order, every log record with the event name ("" for any) that has
// each attribute in match, either on the record or on its resource.
func (s *Sink) Records(eventName string, match map[string]string) []Record {
	s.mu.Lock()
	batches := s.logBatches
	s.mu.Unlock()
	var out []Record
	for _, b := range batches {
		for _, rl := range b.ld.ResourceLogs().All() {
			res := strings(rl.Resource().Attributes())
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					if eventName != "" && lr.EventName() != eventName {
						continue
					}
					attrs := strings(lr.Attributes())
					if !matchesEither(res, attrs, match) {
						continue
					}
					out = append(out, Record{
						Resource:       res,
						Attrs:          attrs,
						EventName:      lr.EventName(),
						Body:           lr.Body().AsString(),
						Severity:       lr.SeverityText(),
						SeverityNumber: int32(lr.SeverityNumber()),
						Time:           lr.Timestamp().AsTime(),
						Observed:       lr.ObservedTimestamp().AsTime(),
						Received:       b.received,
					})
				}
			}
		}
	}
	return out
}

// Points returns, in arrival order, every number data point of the named metric whose resource
// has all the attributes in match.
func (s *Sink) Points(metric string, match map[string]string) []Point {
	s.mu.Lock()
	batches := s.batches
	s.mu.Unlock()
	var out []Point
	for _, b := range batches {
		for _, rm := range b.md.ResourceMetrics().All() {
			res := strings(rm.Resource().Attributes())
			if !matches(res, match) {
				continue
			}
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != metric {
						continue
					}
					for _, dp := range numberPoints(m).All() {
						v := dp.DoubleValue()
						if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
							v = float64(dp.IntValue())
						}
						out = append(out, Point{
							Resource: res,
							Attrs:    strings(dp.Attributes()),
							Start:    dp.StartTimestamp().AsTime(),
							Time:     dp.Timestamp().AsTime(),
							Value:    v,
							Received: b.received,
						})
					}
				}
			}
		}
	}
	return out
}

// Latest returns the newest point (by timestamp) of the metric for the matching resource.
func (s *Sink) Latest(metric string, match map[string]string) (Point, bool) {
	var latest Point
	found := false
	for _, p := range s.Points(metric, match) {
		if !found || !p.Time.Before(latest.Time) {
			latest, found = p, true
		}
	}
	return latest, found
}

func numberPoints(m pmetric.Metric) pmetric.NumberDataPointSlice {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints()
	}
	return pmetric.NewNumberDataPointSlice()
}

func strings(m pcommon.Map) map[string]string {
	out := make(map[string]string, m.Len())
	for k, v := range m.All() {
		out[k] = v.AsString()
	}
	return out
}

// matchesEither tells whether each attribute of want is in a or in b.
func matchesEither(a, b, want map[string]string) bool {
	for k, v := range want {
		if got, ok := b[k]; ok && got == v {
			continue
		}
		if got, ok := a[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
