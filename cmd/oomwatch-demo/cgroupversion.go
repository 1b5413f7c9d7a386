// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// cgroupVersion tells which cgroup version the cgroup filesystem mounted at dir is: "v2" for the
// unified hierarchy, "v1" for the controllers' own hierarchies (a tmpfs holding them, hybrid
// included).
func cgroupVersion(dir string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", fmt.Errorf("cgroup version of %s: %w", dir, err)
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		return "v2", nil
	case unix.CGROUP_SUPER_MAGIC:
		return "v1", nil
	case unix.TMPFS_MAGIC:
		// v1 mounts a tmpfs there, and each controller's hierarchy in it.
		for _, controller := range []string{"memory", "cpu", "pids"} {
			if unix.Statfs(dir+"/"+controller, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
				return "v1", nil
			}
		}
	}
	return "", fmt.Errorf("cgroup version of %s: filesystem type %#x is no cgroup filesystem", dir, st.Type)
}
