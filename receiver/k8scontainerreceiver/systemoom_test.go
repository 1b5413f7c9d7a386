// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scrapertest"
)

func FuzzParseVictim(f *testing.F) {
	f.Add("System OOM encountered, victim process: java, pid: 4242")
	f.Add("System OOM encountered")
	f.Add("(combined from similar events): System OOM encountered, victim process: a, b, pid: 1")
	f.Fuzz(func(t *testing.T, msg string) {
		name, pid := parseVictim(msg)
		if len(name) > len(msg) || pid < 0 && !strings.Contains(msg, "-") {
			t.Fatalf("parseVictim(%q) = %q, %d", msg, name, pid)
		}
	})
}

func TestParseVictim(t *testing.T) {
	for msg, want := range map[string]struct {
		name string
		pid  int64
	}{
		"System OOM encountered, victim process: java, pid: 4242":                                 {"java", 4242},
		"System OOM encountered":                                                                  {"", 0},
		"(combined from similar events): System OOM encountered, victim process: stress, pid: 17": {"stress", 17},
		"System OOM encountered, victim process: kworker/0:1":                                     {"kworker/0:1", 0},
	} {
		name, pid := parseVictim(msg)
		assert.Equal(t, want.name, name, msg)
		assert.Equal(t, want.pid, pid, msg)
	}
}

// Event times have a second's precision: an event first seen after a restart, stamped in the
// second of the earlier run's last look and not among the counts it reported, counts whole.
func TestSystemOOMInTheSecondOfTheHorizon(t *testing.T) {
	o := newSystemOOMs(podtest.Node)
	o.restore(map[types.UID]int32{"known": 2}, podtest.T0.Add(459*time.Millisecond))
	o.observe(scrapertest.SystemOOM("new", podtest.Node, 1, 0, 0, "java"), false)
	o.observe(scrapertest.SystemOOM("known", podtest.Node, 2, -time.Minute, 0, "java"), false)
	o.observe(scrapertest.SystemOOM("old", podtest.Node, 3, -time.Second, -time.Second, "java"), false)
	kills := 0
	o.drain(func(_ string, k []systemKill) { kills += len(k) })
	assert.Equal(t, 1, kills)
}
