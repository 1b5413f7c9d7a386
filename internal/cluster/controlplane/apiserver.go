// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// kube-apiserver: its flags, its start and wait for /readyz, and the stop that tests use to
// crash or restart it.

package controlplane

import (
	"context"
	"fmt"
	"time"
)

// serviceClusterIP is the API server's address in the service network; its certificate names it.
const serviceClusterIP = "10.96.0.1"

// APIServerURL is the API server's address.
func (c *Cluster) APIServerURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.opts.APIServerPort)
}

// StartAPIServer starts kube-apiserver (if it is not running) and waits for /readyz. With the
// certificates kept in the pki folder it comes back under the same CA after StopAPIServer.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if c.running("kube-apiserver") {
		return nil
	}
	pk := c.pki.path
	args := []string{
		"--etcd-servers=" + c.etcdURL(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", c.opts.APIServerPort),
		// The default reconciler refuses a loopback advertise address.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + c.pki.dir,
		"--tls-cert-file=" + pk(apiServerName+".crt"),
		"--tls-private-key-file=" + pk(apiServerName+".key"),
		"--client-ca-file=" + pk(caName+".crt"),
		"--kubelet-client-certificate=" + pk(apiKubeletClient+".crt"),
		"--kubelet-client-key=" + pk(apiKubeletClient+".key"),
		"--kubelet-certificate-authority=" + pk(caName+".crt"),
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pk(serviceAccountKey+".pub"),
		"--service-account-signing-key-file=" + pk(serviceAccountKey+".key"),
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		// Short requests keep a stop short while watches are open; without the watch cache an
		// etcd compaction reaches watchers as a real 410 Gone.
		"--request-timeout=5s",
		"--watch-cache=false",
		"--profiling=false",
		"--v=1",
	}
	args = append(args, c.opts.ExtraAPIArgs...)
	c.logf("starting kube-apiserver on https://127.0.0.1:%d", c.opts.APIServerPort)
	if _, err := c.spawn("kube-apiserver", c.Bin("kube-apiserver"), args, nil); err != nil {
		return err
	}
	hc, err := c.adminHTTPClient()
	if err != nil {
		return err
	}
	readyz := c.APIServerURL() + "/readyz"
	return c.waitFor(ctx, "kube-apiserver", readyz+" to answer 200", answersOK(hc, readyz))
}

// StopAPIServer stops kube-apiserver, SIGKILL when kill is set (a crash) or SIGTERM otherwise.
func (c *Cluster) StopAPIServer(kill bool) error {
	p, ok := c.state.Procs["kube-apiserver"]
	if !ok || !p.alive() {
		return errNotRunning
	}
	grace := 10 * time.Second
	if kill {
		grace = 0
	}
	if err := stopProc(p, grace); err != nil {
		return err
	}
	delete(c.state.Procs, "kube-apiserver")
	return c.saveState()
}
