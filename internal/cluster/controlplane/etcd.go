// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// etcd, the API server's store: one member on loopback, over plain HTTP, its data in VarDir.

package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"
)

func (c *Cluster) etcdURL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.opts.EtcdPort) }

// EtcdEndpoint is the etcd client URL (plain HTTP on loopback), for tests that compact etcd.
func (c *Cluster) EtcdEndpoint() string { return c.etcdURL() }

func (c *Cluster) startEtcd(ctx context.Context) error {
	if c.running("etcd") {
		return nil
	}
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.opts.EtcdPeerPort)
	c.logf("starting etcd on %s", c.etcdURL())
	if _, err := c.spawn("etcd", c.Bin("etcd"), []string{
		"--name=oomwatch",
		"--data-dir=" + filepath.Join(c.opts.VarDir, "etcd"),
		"--listen-client-urls=" + c.etcdURL(),
		"--advertise-client-urls=" + c.etcdURL(),
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=oomwatch=" + peer,
		// Test data only: losing it on a host crash costs nothing, and fsync dominates start time.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, nil); err != nil {
		return err
	}
	health := c.etcdURL() + "/health"
	return c.waitFor(ctx, "etcd", health+" to answer 200", answersOK(&http.Client{Timeout: 2 * time.Second}, health))
}
