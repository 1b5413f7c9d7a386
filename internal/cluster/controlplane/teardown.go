// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Stop and Teardown: everything a start did to the host, undone from the state file and the
// fixed names.

package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Stop tears the cluster down; see Teardown.
func (c *Cluster) Stop(ctx context.Context) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return c.teardown(ctx)
}

// Teardown stops and removes the cluster described by opts, from its state file and fixed names:
// processes (by pid), containers, mounts, cgroups, sysctls, host paths and runtime folders. It
// keeps the binaries, images, certificates and logs. Running it again finds nothing to do.
func Teardown(ctx context.Context, opts Options) error {
	c, err := Open(opts)
	if err != nil {
		return err
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if c, err = Open(opts); err != nil {
		return err
	}
	return c.teardown(ctx)
}

func (c *Cluster) teardown(context.Context) error {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	// The controllers first, so they create and schedule no new pods, and the kubelet, so it
	// does not restart what is being stopped; then every container process (the kubelet's
	// cgroups hold all of them); then the rest, in reverse start order.
	for _, name := range []string{controllerManager, scheduler, nodeLease, "kubelet"} {
		if p, ok := c.state.Procs[name]; ok {
			c.logf("stopping %s (pid %d)", name, p.PID)
			keep(stopProc(p, 5*time.Second))
		}
	}
	keep(killPIDs(cgroupPIDs(c.opts.CgroupRoot), 10*time.Second))
	for _, name := range []string{"containerd", "kube-apiserver", "etcd"} {
		if p, ok := c.state.Procs[name]; ok {
			c.logf("stopping %s (pid %d)", name, p.PID)
			keep(stopProc(p, 10*time.Second))
		}
	}
	// Whatever is left in the system cgroup (shims, or processes of a start whose state was
	// lost) and in the pods' cgroups.
	keep(killPIDs(append(cgroupPIDs(c.systemCgroup()), cgroupPIDs(c.opts.CgroupRoot)...), 10*time.Second))

	roots := []string{c.opts.VarDir, c.opts.RunDir}
	roots = append(roots, fixedHostPaths...)
	keep(unmountAll(roots...))

	keep(removeCgroup(c.opts.CgroupRoot, 10*time.Second))
	keep(removeCgroup(c.systemCgroup(), 10*time.Second))

	if c.state.Sysctls != nil {
		if err := writeSysctls(c.state.Sysctls); err != nil {
			keep(err)
		} else {
			c.state.Sysctls = nil
		}
	}

	// Only paths this cluster created; a path that existed before start is left as it was.
	var kept []string
	for _, p := range c.state.CreatedPaths {
		if err := os.RemoveAll(p); err != nil {
			keep(err)
			kept = append(kept, p)
		}
	}
	c.state.CreatedPaths = kept
	if target, err := os.Readlink(cadvisorSocket); err == nil && target == c.ContainerdSocket() {
		keep(os.Remove(cadvisorSocket))
	}
	for _, d := range []string{c.opts.VarDir, c.opts.RunDir} {
		if mps, _ := mountsUnder(d); len(mps) > 0 {
			keep(fmt.Errorf("not removing %s: still mounted below it", d))
			continue
		}
		keep(os.RemoveAll(d))
	}

	c.state.Procs = map[string]proc{}
	if len(errs) > 0 {
		_ = c.saveState()
		return errors.Join(errs...)
	}
	if err := os.Remove(c.statePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	c.logf("cluster stopped and cleaned up")
	return nil
}
