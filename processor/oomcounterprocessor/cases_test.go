// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.yaml.in/yaml/v3"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/metadatatest"
)

// The behaviour cases live in testdata/cases: one folder per case, an optional config.yaml with
// the processor settings that differ from the defaults, and numbered step files. Each step holds
// the input batch, the expected output batch and the expected self-telemetry totals after it.
// See testdata/cases/README.md for the format.

type caseStep struct {
	Advance        time.Duration    `yaml:"advance"`
	Restart        bool             `yaml:"restart"`
	CorruptStorage bool             `yaml:"corrupt_storage"`
	In             []caseResource   `yaml:"in"`
	Out            []caseResource   `yaml:"out"`
	Telemetry      map[string]int64 `yaml:"telemetry"`
	Extra          map[string]any   `yaml:",inline"`
}

type caseResource struct {
	Resource map[string]any `yaml:"resource,omitempty"`
	Metrics  []caseMetric   `yaml:"metrics"`
}

type caseMetric struct {
	Name string `yaml:"name"`
	// Type is gauge, delta (monotonic delta sum), counter (cumulative monotonic sum) or
	// cumulative (cumulative non-monotonic sum).
	Type   string      `yaml:"type"`
	Points []casePoint `yaml:"points"`
}

type casePoint struct {
	Start uint64         `yaml:"start,omitempty"`
	TS    uint64         `yaml:"ts"`
	Value any            `yaml:"value"`
	Attrs map[string]any `yaml:"attrs,omitempty"`
}

var telemetryKeys = []string{
	"series_tracked", "points_counted", "increments", "restarts_unattributed",
	"dropped_out_of_order", "dropped_limit", "dropped_invalid",
	"series_refused", "series_expired", "checkpoint_errors",
}

func TestCases(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "cases", "*"))
	require.NoError(t, err)
	ran := 0
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		ran++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			runCase(t, dir)
		})
	}
	require.NotZero(t, ran, "no cases found")
}

func runCase(t *testing.T, dir string) {
	cfg := createDefaultConfig().(*Config)
	if _, err := os.Stat(filepath.Join(dir, "config.yaml")); err == nil {
		cm, err := confmaptest.LoadConf(filepath.Join(dir, "config.yaml"))
		require.NoError(t, err)
		require.NoError(t, cm.Unmarshal(cfg))
	}
	require.NoError(t, cfg.Validate())

	steps, err := filepath.Glob(filepath.Join(dir, "step-*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, steps, "a case needs at least one step-*.yaml")
	sort.Strings(steps)

	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	host := &storageHost{ext: map[component.ID]component.Component{}}
	if cfg.Storage != nil {
		host.ext[*cfg.Storage] = newMemoryStorage()
	}
	clock := time.Unix(1_000_000, 0)
	start := func() *counterProcessor {
		p, err := newCounterProcessor(metadatatest.NewSettings(tt), cfg)
		require.NoError(t, err)
		p.now = func() time.Time { return clock }
		p.epoch = clock
		require.NoError(t, p.start(context.Background(), host))
		return p
	}
	p := start()
	defer func() { require.NoError(t, p.shutdown(context.Background())) }()

	for _, file := range steps {
		var step caseStep
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(raw, &step), file)
		require.Empty(t, step.Extra, "%s: unknown keys", file)
		name := filepath.Base(file)

		if step.Restart {
			require.NoError(t, p.shutdown(context.Background()), name)
			if step.CorruptStorage {
				host.memory(*cfg.Storage).corrupt()
			}
			p = start()
		}
		if step.Advance > 0 {
			clock = clock.Add(step.Advance)
			p.expire()
		}
		got, err := p.processMetrics(context.Background(), toMetrics(t, step.In))
		require.NoError(t, err, name)
		assert.Equal(t, canonical(step.Out), canonical(fromMetrics(got)), "%s: output", name)
		assert.Equal(t, fullTelemetry(step.Telemetry), readTelemetry(t, tt), "%s: telemetry", name)
	}
}

// canonical makes empty lists nil, so "metrics: []" and no metrics compare equal.
func canonical(rs []caseResource) []caseResource {
	if len(rs) == 0 {
		return nil
	}
	for i := range rs {
		if len(rs[i].Metrics) == 0 {
			rs[i].Metrics = nil
		}
		for j := range rs[i].Metrics {
			if len(rs[i].Metrics[j].Points) == 0 {
				rs[i].Metrics[j].Points = nil
			}
		}
	}
	return rs
}

func fullTelemetry(want map[string]int64) map[string]int64 {
	full := make(map[string]int64, len(telemetryKeys))
	for _, k := range telemetryKeys {
		full[k] = want[k]
	}
	for k, v := range want {
		full[k] = v // a misspelt key shows up in the diff
	}
	return full
}

func readTelemetry(t *testing.T, tt *componenttest.Telemetry) map[string]int64 {
	got := make(map[string]int64, len(telemetryKeys))
	for _, k := range telemetryKeys {
		got[k] = 0
	}
	read := func(metric string, f func(metricdata.DataPoint[int64])) {
		m, err := tt.GetMetric("otelcol_" + metric)
		if err != nil {
			return // not recorded yet
		}
		sum, ok := m.Data.(metricdata.Sum[int64])
		require.True(t, ok, metric)
		for _, dp := range sum.DataPoints {
			f(dp)
		}
	}
	simple := map[string]string{
		"series_tracked":        "oom_counter_series_tracked",
		"points_counted":        "oom_counter_points_counted",
		"increments":            "oom_counter_increments",
		"restarts_unattributed": "oom_counter_restarts_unattributed",
		"series_refused":        "oom_counter_series_refused",
		"series_expired":        "oom_counter_series_expired",
		"checkpoint_errors":     "oom_counter_checkpoint_errors",
	}
	for key, metric := range simple {
		read(metric, func(dp metricdata.DataPoint[int64]) { got[key] += dp.Value })
	}
	read("oom_counter_points_dropped", func(dp metricdata.DataPoint[int64]) {
		r, _ := dp.Attributes.Value("reason")
		got["dropped_"+r.AsString()] += dp.Value
	})
	return got
}

func toMetrics(t *testing.T, in []caseResource) pmetric.Metrics {
	md := pmetric.NewMetrics()
	for _, r := range in {
		rm := md.ResourceMetrics().AppendEmpty()
		require.NoError(t, rm.Resource().Attributes().FromRaw(normalize(r.Resource)))
		sm := rm.ScopeMetrics().AppendEmpty()
		for _, cm := range r.Metrics {
			m := sm.Metrics().AppendEmpty()
			m.SetName(cm.Name)
			var dps pmetric.NumberDataPointSlice
			switch cm.Type {
			case "gauge":
				dps = m.SetEmptyGauge().DataPoints()
			case "delta", "counter", "cumulative":
				s := m.SetEmptySum()
				s.SetIsMonotonic(cm.Type != "cumulative")
				s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				if cm.Type == "delta" {
					s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
				}
				dps = s.DataPoints()
			default:
				t.Fatalf("metric %s: unknown type %q", cm.Name, cm.Type)
			}
			for _, cp := range cm.Points {
				dp := dps.AppendEmpty()
				dp.SetStartTimestamp(pcommon.Timestamp(cp.Start))
				dp.SetTimestamp(pcommon.Timestamp(cp.TS))
				switch v := cp.Value.(type) {
				case int:
					dp.SetIntValue(int64(v))
				case float64:
					dp.SetDoubleValue(v)
				case string:
					// YAML has no literal for NaN that survives every decoder: write "NaN".
					// "none" is a point with no recorded value.
					if v == "none" {
						dp.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
						break
					}
					require.Equal(t, "NaN", v)
					dp.SetDoubleValue(math.NaN())
				default:
					t.Fatalf("metric %s: value %v of type %T", cm.Name, v, v)
				}
				require.NoError(t, dp.Attributes().FromRaw(normalize(cp.Attrs)))
			}
		}
	}
	return md
}

// normalize turns YAML's ints into int64, the type pdata keeps.
func normalize(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if i, ok := v.(int); ok {
			v = int64(i)
		}
		out[k] = v
	}
	return out
}

func fromMetrics(md pmetric.Metrics) []caseResource {
	var out []caseResource
	for _, rm := range md.ResourceMetrics().All() {
		cr := caseResource{Resource: attrsOf(rm.Resource().Attributes())}
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				cm := caseMetric{Name: m.Name()}
				var dps pmetric.NumberDataPointSlice
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					cm.Type = "gauge"
					dps = m.Gauge().DataPoints()
				case pmetric.MetricTypeSum:
					s := m.Sum()
					switch {
					case s.AggregationTemporality() == pmetric.AggregationTemporalityDelta:
						cm.Type = "delta"
					case s.IsMonotonic():
						cm.Type = "counter"
					default:
						cm.Type = "cumulative"
					}
					dps = s.DataPoints()
				default:
					cm.Type = m.Type().String()
				}
				for _, dp := range dps.All() {
					cp := casePoint{Start: uint64(dp.StartTimestamp()), TS: uint64(dp.Timestamp()), Attrs: attrsOf(dp.Attributes())}
					switch dp.ValueType() {
					case pmetric.NumberDataPointValueTypeInt:
						cp.Value = int(dp.IntValue())
					default:
						if v := dp.DoubleValue(); math.IsNaN(v) {
							cp.Value = "NaN"
						} else {
							cp.Value = v
						}
					}
					cm.Points = append(cm.Points, cp)
				}
				cr.Metrics = append(cr.Metrics, cm)
			}
		}
		out = append(out, cr)
	}
	return out
}

func attrsOf(m pcommon.Map) map[string]any {
	if m.Len() == 0 {
		return nil
	}
	out := make(map[string]any, m.Len())
	for k, v := range m.All() {
		raw := v.AsRaw()
		if i, ok := raw.(int64); ok {
			raw = int(i)
		}
		out[k] = raw
	}
	return out
}

// storageHost offers storage extensions to the processor under test.
type storageHost struct {
	ext map[component.ID]component.Component
}

func (h *storageHost) GetExtensions() map[component.ID]component.Component { return h.ext }

func (h *storageHost) memory(id component.ID) *memoryStorage {
	return h.ext[id].(*memoryStorage)
}

// memoryStorage is a storage extension that keeps its data in memory, shared by all clients of
// the same component, as file_storage would keep it on disk across restarts.
type memoryStorage struct {
	mu   sync.Mutex
	data map[string][]byte
	// fail, when set, is returned by every operation, as by a broken disk.
	fail           error
	opened, closed int
	// sets counts Set calls and batches: the writes that reached storage.
	sets int
}

func newMemoryStorage() *memoryStorage { return &memoryStorage{data: map[string][]byte{}} }

// withMemoryStorage points cfg at a new in-memory storage extension and returns it, with a host
// that holds it.
func withMemoryStorage(cfg *Config) (*memoryStorage, component.Host) {
	id := component.MustNewID("memory")
	cfg.Storage = &id
	mem := newMemoryStorage()
	return mem, &storageHost{ext: map[component.ID]component.Component{id: mem}}
}

func (*memoryStorage) Start(context.Context, component.Host) error { return nil }
func (*memoryStorage) Shutdown(context.Context) error              { return nil }

func (s *memoryStorage) GetClient(_ context.Context, kind component.Kind, id component.ID, name string) (storage.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened++
	return &memoryClient{s: s, prefix: fmt.Sprintf("%s/%s/%s/", kind, id, name)}, nil
}

// snapshot copies the data, as a disk would hold it after the process was killed.
func (s *memoryStorage) snapshot() *memoryStorage {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := newMemoryStorage()
	for k, v := range s.data {
		c.data[k] = append([]byte(nil), v...)
	}
	return c
}

func (s *memoryStorage) failWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// writes counts the write operations and batches that reached the storage.
func (s *memoryStorage) writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sets
}

func (s *memoryStorage) clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

func (s *memoryStorage) closedClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *memoryStorage) corrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.data {
		if len(v) > 0 {
			v = append([]byte(nil), v...)
			v[len(v)/2] ^= 0xff
			s.data[k] = v
		}
	}
}

type memoryClient struct {
	s      *memoryStorage
	prefix string
}

func (c *memoryClient) Get(_ context.Context, key string) ([]byte, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.fail != nil {
		return nil, c.s.fail
	}
	v, ok := c.s.data[c.prefix+key]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

func (c *memoryClient) Set(_ context.Context, key string, value []byte) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.fail != nil {
		return c.s.fail
	}
	c.s.data[c.prefix+key] = append([]byte(nil), value...)
	c.s.sets++
	return nil
}

func (c *memoryClient) Delete(_ context.Context, key string) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.fail != nil {
		return c.s.fail
	}
	delete(c.s.data, c.prefix+key)
	return nil
}

func (c *memoryClient) Batch(ctx context.Context, ops ...*storage.Operation) error {
	c.s.mu.Lock()
	c.s.sets++
	for _, op := range ops {
		if op.Type == storage.Set {
			c.s.sets-- // counted once for the whole batch
		}
	}
	c.s.mu.Unlock()
	for _, op := range ops {
		var err error
		switch op.Type {
		case storage.Get:
			op.Value, err = c.Get(ctx, op.Key)
		case storage.Set:
			err = c.Set(ctx, op.Key, op.Value)
		case storage.Delete:
			err = c.Delete(ctx, op.Key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *memoryClient) Close(context.Context) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.closed++
	return nil
}
