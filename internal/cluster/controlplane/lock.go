// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The lock that serialises starts and teardowns of one cluster across processes.

package controlplane

import (
	"os"
	"path/filepath"
	"syscall"
)

// lock serialises starts and teardowns of the cluster in one folder across processes (two test
// binaries, or a test and `make cluster-down`), so the state file is never written by two at once.
func (c *Cluster) lock() (unlock func(), err error) {
	if err := os.MkdirAll(c.opts.Dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(c.opts.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
