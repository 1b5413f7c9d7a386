// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The host as the node changes it and teardown restores it: sysctls, cgroups, mounts, and the
// /proc reading that names a process by pid and start time.

package controlplane

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroupMount = "/sys/fs/cgroup"

// Sysctls the kubelet writes when protectKernelDefaults is false; their values are saved before it
// starts and put back at teardown.
var kubeletSysctls = []string{
	"vm.overcommit_memory",
	"vm.panic_on_oom",
	"kernel.panic",
	"kernel.panic_on_oops",
	"kernel.keys.root_maxkeys",
	"kernel.keys.root_maxbytes",
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctls() (map[string]string, error) {
	out := map[string]string{}
	for _, name := range kubeletSysctls {
		b, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			return nil, err
		}
		out[name] = strings.TrimSpace(string(b))
	}
	return out, nil
}

func writeSysctls(values map[string]string) error {
	var errs []error
	for name, v := range values {
		if err := os.WriteFile(sysctlPath(name), []byte(v), 0o600); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s=%s: %w", name, v, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupHierarchies lists the mounted cgroup hierarchies (v1 controllers, the named systemd one and,
// on a hybrid host, the unified one).
func cgroupHierarchies() ([]string, error) {
	entries, err := os.ReadDir(cgroupMount)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(cgroupMount, e.Name())
		var st syscall.Statfs_t
		if !e.IsDir() || syscall.Statfs(p, &st) != nil {
			continue
		}
		// cgroup v1 and cgroup2 file systems; symlinks such as cpu -> cpu,cpuacct are skipped by IsDir.
		if st.Type == 0x27e0eb || st.Type == 0x63677270 {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		// A pure cgroup v2 host mounts the unified hierarchy at the top.
		out = append(out, cgroupMount)
	}
	return out, nil
}

// createCgroup makes name in every hierarchy, with mode perm. A new cpuset cgroup has no CPUs or
// memory nodes, so it gets its parent's, or no process could join it.
func createCgroup(name string, perm os.FileMode) error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		dir := filepath.Join(h, name)
		if err := os.MkdirAll(dir, perm); err != nil {
			return err
		}
		// MkdirAll's mode is masked by the umask.
		if err := os.Chmod(dir, perm); err != nil {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue
			}
			if cur, _ := os.ReadFile(filepath.Join(dir, f)); strings.TrimSpace(string(cur)) != "" {
				continue
			}
			//nolint:gosec // dir is a cgroup named by Options, f one of two fixed names
			if err := os.WriteFile(filepath.Join(dir, f), parent, 0o600); err != nil {
				return fmt.Errorf("%s/%s: %w", dir, f, err)
			}
		}
	}
	return nil
}

// joinCgroup moves pid into name in every hierarchy, so that its children (shims, containers
// before runc moves them) can be found there at teardown.
func joinCgroup(name string, pid int) error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		procs := filepath.Join(h, name, "cgroup.procs")
		if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0o600); err != nil {
			return fmt.Errorf("moving %d into %s: %w", pid, procs, err)
		}
	}
	return nil
}

// cgroupPIDs returns every process in name or below it, in any hierarchy.
func cgroupPIDs(name string) []int {
	hs, _ := cgroupHierarchies()
	seen := map[int]bool{}
	var out []int
	for _, h := range hs {
		root := filepath.Join(h, name)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// removeCgroup removes name and everything below it, deepest first, in every hierarchy. A cgroup
// whose last process just died can stay busy for a moment, so it retries.
func removeCgroup(name string, wait time.Duration) error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		var left []string
		for _, h := range hs {
			root := filepath.Join(h, name)
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
					left = append(left, d)
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups still busy: %s", strings.Join(left, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountsUnder returns the mount points at or below any of roots, deepest first.
func mountsUnder(roots ...string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, r := range roots {
			if mp == r || strings.HasPrefix(mp, strings.TrimSuffix(r, "/")+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i], "/") > strings.Count(out[j], "/")
	})
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes mountinfo uses for spaces and the like.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts everything at or below roots. A mount can be stacked several times (the
// kubelet root is a bind mount of itself), so it loops until none is left.
func unmountAll(roots ...string) error {
	for range 20 {
		mps, err := mountsUnder(roots...)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				_ = syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	}
	mps, _ := mountsUnder(roots...)
	if len(mps) > 0 {
		return fmt.Errorf("still mounted: %s", strings.Join(mps, ", "))
	}
	return nil
}
