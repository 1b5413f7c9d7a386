// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package oomcounterprocessor

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	"github.com/oomwatch/oomwatch/processor/oomcounterprocessor/internal/counting"
)

// GapPolicy says how container instances skipped by a jump of the occurrence attribute count.
// It is the counting rule's own type: the value configured is the value the rule reads.
type GapPolicy = counting.GapPolicy

const (
	// GapPolicyLowerBound counts only what was seen.
	GapPolicyLowerBound = counting.GapPolicyLowerBound
	// GapPolicyUpperBound also counts every skipped instance as one event.
	GapPolicyUpperBound = counting.GapPolicyUpperBound
)

// Counter is one counting rule: which input metric becomes which cumulative counter.
type Counter struct {
	// Metric is the input: a gauge 0/1 flag, or a delta monotonic sum.
	Metric string `mapstructure:"metric"`
	// Output is the cumulative monotonic int sum the input becomes.
	Output string `mapstructure:"output"`
	// OccurrenceAttribute is an int data-point attribute naming the occurrence a flag is about
	// (for example the restart index of a container). Empty: rising edges of the flag count.
	OccurrenceAttribute string `mapstructure:"occurrence_attribute"`
}

// Config of the oom_counter processor.
type Config struct {
	Counters  []Counter `mapstructure:"counters"`
	GapPolicy GapPolicy `mapstructure:"gap_policy"`
	// MaxStale is how long a series may go unseen before it is forgotten.
	MaxStale time.Duration `mapstructure:"max_stale"`
	// MaxSeries bounds the number of tracked series.
	MaxSeries int `mapstructure:"max_series"`
	// IdentifyingAttributes are the resource attributes that tell one series from another. The
	// other resource attributes are carried to the output but neither split a series nor restart
	// its count. Empty: every resource attribute identifies.
	IdentifyingAttributes []string `mapstructure:"identifying_attributes"`
	// KeepInput passes the input metric on beside the counter.
	KeepInput bool `mapstructure:"keep_input"`
	// Storage is the ID of a storage extension that keeps the state across restarts.
	Storage *component.ID `mapstructure:"storage"`
	// CheckpointInterval is how often the state is saved when Storage is set; it is saved at
	// shutdown too.
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`

	// Prevents unkeyed literals.
	_ struct{}
}

var _ confmap.Validator = (*Config)(nil)

// Validate checks the configuration; each error names the field and the value.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Counters) == 0 {
		errs = append(errs, errors.New("counters must hold at least one rule"))
	}
	inputs := map[string]int{}
	outputs := map[string]int{}
	for i, r := range c.Counters {
		if r.Metric == "" {
			errs = append(errs, fmt.Errorf("counters[%d].metric must not be empty", i))
		}
		if r.Output == "" {
			errs = append(errs, fmt.Errorf("counters[%d].output must not be empty", i))
		}
		if j, dup := inputs[r.Metric]; dup && r.Metric != "" {
			errs = append(errs, fmt.Errorf("counters[%d].metric %q is already the input of counters[%d]", i, r.Metric, j))
		}
		if j, dup := outputs[r.Output]; dup && r.Output != "" {
			errs = append(errs, fmt.Errorf("counters[%d].output %q is already the output of counters[%d]", i, r.Output, j))
		}
		inputs[r.Metric] = i
		outputs[r.Output] = i
	}
	for i, r := range c.Counters {
		if j, clash := inputs[r.Output]; clash && r.Output != "" {
			errs = append(errs, fmt.Errorf("counters[%d].output %q is the input of counters[%d]: a counter would be counted again", i, r.Output, j))
		}
	}
	switch c.GapPolicy {
	case GapPolicyLowerBound, GapPolicyUpperBound:
	default:
		errs = append(errs, fmt.Errorf("gap_policy must be %q or %q (got %q)", GapPolicyLowerBound, GapPolicyUpperBound, c.GapPolicy))
	}
	if c.MaxStale < time.Second {
		errs = append(errs, fmt.Errorf("max_stale must be at least 1s (got %s)", c.MaxStale))
	}
	if c.MaxSeries <= 0 {
		errs = append(errs, fmt.Errorf("max_series must be positive (got %d)", c.MaxSeries))
	}
	seen := make(map[string]int, len(c.IdentifyingAttributes))
	for i, a := range c.IdentifyingAttributes {
		if a == "" {
			errs = append(errs, fmt.Errorf("identifying_attributes[%d] must not be empty", i))
			continue
		}
		if j, dup := seen[a]; dup {
			errs = append(errs, fmt.Errorf("identifying_attributes[%d] %q is already identifying_attributes[%d]", i, a, j))
		}
		seen[a] = i
	}
	if c.Storage != nil && c.CheckpointInterval <= 0 {
		errs = append(errs, fmt.Errorf("checkpoint_interval must be positive when storage is set (got %s)", c.CheckpointInterval))
	}
	return errors.Join(errs...)
}
