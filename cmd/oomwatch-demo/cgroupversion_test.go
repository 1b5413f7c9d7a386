// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The version the demo prints is the one /proc/self/mountinfo shows mounted at /sys/fs/cgroup.
func TestCgroupVersion(t *testing.T) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	want := ""
	for _, line := range strings.Split(string(mounts), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 9 || fields[4] != "/sys/fs/cgroup" {
			continue
		}
		// The filesystem type follows the " - " separator.
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				switch fields[i+1] {
				case "cgroup2":
					want = "v2"
				case "tmpfs", "cgroup":
					want = "v1"
				}
			}
		}
	}
	if want == "" {
		t.Skip("nothing mounted at /sys/fs/cgroup")
	}
	got, err := cgroupVersion("/sys/fs/cgroup")
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, err = cgroupVersion(t.TempDir())
	assert.Error(t, err, "a folder of another filesystem")
}
