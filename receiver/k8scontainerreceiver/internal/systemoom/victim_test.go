// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package systemoom

// The victim the kubelet names in a SystemOOM event's message.

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
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
