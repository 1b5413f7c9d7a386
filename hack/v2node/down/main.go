// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command down stops a cgroup v2 node left by an interrupted make v2-node-smoke (its QEMU and
// run folder) and then the local control plane; safe to run twice.
//
//	go run ./hack/v2node/down
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/cluster/v2node"
)

func main() {
	opts, err := controlplane.Options{Log: os.Stdout}.Defaults()
	if err == nil {
		err = v2node.Teardown(v2node.Options{Log: os.Stdout}, opts.ModuleDir)
	}
	if err == nil {
		err = controlplane.Teardown(context.Background(), opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "v2node down:", err)
		os.Exit(1)
	}
}
