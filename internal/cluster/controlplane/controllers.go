// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// kube-controller-manager and kube-scheduler: their identities, their flags, their start and
// the wait for their /healthz.

package controlplane

import (
	"context"
	"fmt"
)

// Process names of the controllers, as in the state file and the logs folder.
const (
	controllerManager = "kube-controller-manager"
	scheduler         = "kube-scheduler"
)

// startControllers starts kube-controller-manager and kube-scheduler (those not running) and
// waits until both answer /healthz. Each acts as the user the bootstrap RBAC policy binds to its
// cluster role, with one instance and no leader election (an API server restart then does not
// make them exit), and serves its own endpoints on loopback only.
func (c *Cluster) startControllers(ctx context.Context) error {
	pk := c.pki.path
	// Identity, serving and election flags, the same for both; name is their pki and
	// kubeconfig name.
	shared := func(name string) []string {
		kc := c.kubeconfigPath(name)
		return []string{
			"--kubeconfig=" + kc,
			// Who may read its /metrics: client certificates of the cluster CA, and tokens and
			// permissions as the API server reviews them. The CA is given rather than looked up
			// in kube-system, where the API server (without a front proxy) publishes no
			// request-header CA and the lookup would log an error again and again.
			"--client-ca-file=" + pk(caName+".crt"),
			"--authentication-skip-lookup=true",
			"--authentication-kubeconfig=" + kc,
			"--authorization-kubeconfig=" + kc,
			"--bind-address=127.0.0.1",
			"--tls-cert-file=" + pk(name+".crt"),
			"--tls-private-key-file=" + pk(name+".key"),
			"--leader-elect=false",
		}
	}
	components := []struct {
		name string
		port int
		args []string
	}{
		{controllerManager, c.opts.ControllerManagerPort, append(shared(controllerManagerName),
			fmt.Sprintf("--secure-port=%d", c.opts.ControllerManagerPort),
			// Each controller acts as its own service account in kube-system, with its own role.
			"--use-service-account-credentials=true",
			// The token controller signs token Secrets with the key the API server verifies; the
			// CA goes into them and, as kube-root-ca.crt, into every namespace.
			"--service-account-private-key-file="+pk(serviceAccountKey+".key"),
			"--root-ca-file="+pk(caName+".crt"),
			// Certificate signing requests that are approved are signed by the cluster CA.
			"--cluster-signing-cert-file="+pk(caName+".crt"),
			"--cluster-signing-key-file="+pk(caName+".key"),
			// Every default controller but node IPAM: pods use the host network, there is no
			// pod CIDR to give out (no cloud either: 1.37 runs cloud controllers elsewhere).
			"--controllers=*,-node-ipam-controller",
			// Its volume plugins probe the same folder as the kubelet's; the default is a
			// host path, /usr/libexec/kubernetes, which it would create.
			"--flex-volume-plugin-dir="+c.volumePluginDir(),
			"--profiling=false",
			"--v=1",
		)},
		{scheduler, c.opts.SchedulerPort, append(shared(schedulerName),
			fmt.Sprintf("--secure-port=%d", c.opts.SchedulerPort),
			"--v=1",
		)},
	}
	for _, comp := range components {
		if c.running(comp.name) {
			continue
		}
		c.logf("starting %s on https://127.0.0.1:%d", comp.name, comp.port)
		if _, err := c.spawn(comp.name, c.Bin(comp.name), comp.args, nil); err != nil {
			return err
		}
	}
	// Both start at once; each is then waited for.
	hc, err := c.adminHTTPClient()
	if err != nil {
		return err
	}
	for _, comp := range components {
		healthz := fmt.Sprintf("https://127.0.0.1:%d/healthz", comp.port)
		if err := c.waitFor(ctx, comp.name, healthz+" to answer 200", answersOK(hc, healthz)); err != nil {
			return err
		}
	}
	return nil
}
