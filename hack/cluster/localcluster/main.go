// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command localcluster starts and stops the project's local cluster (see docs/local-cluster.md).
//
//	localcluster up     start etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//	                    containerd and a kubelet, and wait until the node is Ready
//	localcluster down   stop everything and undo every change to the host; safe to run twice
//	localcluster images build the test images into _build/cluster/images
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
)

func main() {
	fs := flag.NewFlagSet("localcluster", flag.ExitOnError)
	noNode := fs.Bool("control-plane-only", false, "start the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) without a node")
	standin := fs.String("standin-node", "oomwatch-standin", "name of the kubelet-less node (empty: none)")
	keep := fs.Bool("keep-on-failure", false, "leave a cluster that failed to start running, to inspect it")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: localcluster [flags] up|down|images")
		fs.PrintDefaults()
	}
	if len(os.Args) < 2 {
		fs.Usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := controlplane.Options{Node: !*noNode, StandinNodeName: *standin, Log: os.Stdout}

	var err error
	switch cmd {
	case "up":
		began := time.Now()
		var c *controlplane.Cluster
		c, err = controlplane.Start(ctx, opts)
		switch {
		case err == nil:
			fmt.Printf(">> cluster up in %s\n   export KUBECONFIG=%s\n", time.Since(began).Round(10*time.Millisecond), c.AdminKubeconfig())
		case c == nil:
		case *keep:
			fmt.Fprintf(os.Stderr, "localcluster: start failed; logs in %s/logs; `make cluster-down` cleans up\n", c.Options().Dir)
		default:
			fmt.Fprintf(os.Stderr, "localcluster: start failed (logs in %s/logs); tearing down\n", c.Options().Dir)
			if terr := controlplane.Teardown(context.Background(), opts); terr != nil {
				fmt.Fprintln(os.Stderr, "localcluster: teardown:", terr)
			}
		}
	case "down":
		err = controlplane.Teardown(ctx, opts)
	case "images":
		var o controlplane.Options
		if o, err = opts.Defaults(); err == nil {
			var archives []testworkload.ImageArchive
			archives, err = testworkload.BuildImages(ctx, o.ModuleDir, o.Dir+"/images")
			for _, a := range archives {
				fmt.Printf("%s\t%s\n", a.Name, a.Path)
			}
		}
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}
