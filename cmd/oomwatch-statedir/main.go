// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command oomwatch-statedir hands the agent's state directory to the user the collector runs as.
// It is the init container of deploy/daemonset.yaml: the kubelet creates a missing hostPath
// directory as root:root 0755, which the collector, running as 65532, cannot write.
//
//	oomwatch-statedir --dir=/var/lib/otelcol-oomwatch --owner=65532:65532
//
// It makes the directory itself owner:owner with mode 0700 and leaves its contents alone: only
// the collector writes there. It needs to run as root with CAP_CHOWN and nothing else: the mode is
// set while root owns the directory (taking it back first if needed), so CAP_FOWNER is not needed,
// and it never reads inside the directory, so neither is CAP_DAC_OVERRIDE. A directory that is
// already right is not touched.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// mode keeps the node's other users out of the counter state.
const mode fs.FileMode = 0o700

func main() {
	dir := flag.String("dir", "", "the state directory (a hostPath mount)")
	owner := flag.String("owner", "", "uid:gid that gets the directory")
	flag.Parse()
	uid, gid, err := parseOwner(*owner)
	if err == nil && *dir == "" {
		err = errors.New("--dir is required")
	}
	if err == nil {
		err = prepare(*dir, uid, gid)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "oomwatch-statedir:", err)
		os.Exit(1)
	}
}

func parseOwner(s string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(s, ":")
	if ok {
		uid, err = strconv.Atoi(u)
	}
	if ok && err == nil {
		gid, err = strconv.Atoi(g)
	}
	if !ok || err != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("--owner must be uid:gid (got %q)", s)
	}
	return uid, gid, nil
}

// prepare makes dir uid:gid with mode 0700.
func prepare(dir string, uid, gid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (%s)", dir, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", dir)
	}
	if int(st.Uid) == uid && int(st.Gid) == gid && fi.Mode().Perm() == mode {
		return nil
	}
	if fi.Mode().Perm() != mode {
		// chmod without CAP_FOWNER works for the owner only.
		if me := os.Geteuid(); int(st.Uid) != me {
			if err := os.Lchown(dir, me, -1); err != nil {
				return err
			}
		}
		if err := os.Chmod(dir, mode); err != nil {
			return err
		}
	}
	return os.Lchown(dir, uid, gid)
}
