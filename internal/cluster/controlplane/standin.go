// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The kubelet-less node: its Node object, and the nodelease process that keeps it alive.

package controlplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// The kubelet-less node is what virtual-kubelet and KWOK call a virtual node: a Node object whose
// pods never run, here with statuses that tests write themselves. With the node lifecycle
// controller running, such a node needs two things a real operator gives a virtual node:
//   - a heartbeat. Without one the controller marks the node Unknown after its grace period
//     (50 s), taints it unreachable, marks its pods NotReady (a status write that races with the
//     tests' own) and evicts them 300 s later. nodelease renews the node's Lease, under the
//     node's own identity, as a kubelet does.
//   - a NoSchedule taint, so that the scheduler and the DaemonSet controller put nothing there
//     that does not ask for it: pods without spec.nodeName land on the real node. Tests bind
//     pods to it by spec.nodeName, which no taint checks. A DaemonSet that tolerates every
//     taint (deploy/'s agent does) still gets a pod there, which stays Pending, as on a real
//     node whose kubelet does not start it.
const (
	standinTaintKey = "oomwatch.dev/standin"
	nodeLease       = "nodelease"
)

// startStandin registers the kubelet-less node and starts the process that renews its Lease.
func (c *Cluster) startStandin(ctx context.Context) error {
	if err := c.ensureStandinNode(ctx); err != nil {
		return err
	}
	if c.running(nodeLease) {
		return nil
	}
	// Built from this module at every start (incremental: well under a second once cached), so
	// it is never older than the code that starts it.
	bin := c.Bin(nodeLease)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, //nolint:gosec // builds this module's own command
		"github.com/oomwatch/oomwatch/internal/cluster/controlplane/nodelease")
	cmd.Dir = c.opts.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building nodelease: %w\n%s", err, b)
	}
	c.logf("renewing the Lease of node %s", c.opts.StandinNodeName)
	_, err := c.spawn(nodeLease, bin, []string{
		"-server=" + c.APIServerURL(),
		"-ca=" + c.CAFile(),
		"-cert=" + c.pki.path(standinClientName+".crt"),
		"-key=" + c.pki.path(standinClientName+".key"),
		"-node=" + c.opts.StandinNodeName,
	}, nil)
	return err
}

// ensureStandinNode registers the kubelet-less node: Ready, reachable (for whatever serves its
// kubelet port) on 127.0.0.1, tainted so that nothing is scheduled there unasked.
func (c *Cluster) ensureStandinNode(ctx context.Context) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	name := c.opts.StandinNodeName
	taint := corev1.Taint{Key: standinTaintKey, Value: "true", Effect: corev1.TaintEffectNoSchedule}
	_, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name,
			"kubernetes.io/os":       "linux",
			standinTaintKey:          "true",
		}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{taint}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("node %s: %w", name, err)
	}
	// The node lifecycle controller writes this node too (taints, and conditions if the Lease
	// went stale), so each write is retried on a conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		node.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "StandIn",
			Message: "no kubelet: pod statuses are written by tests", LastHeartbeatTime: now, LastTransitionTime: now,
		}}
		node.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: name},
		}
		node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(c.opts.StandinKubelet)
		node.Status.Capacity = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("4Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		}
		node.Status.Allocatable = node.Status.Capacity
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	// Node admission adds the not-ready taint at creation; the node lifecycle controller takes it
	// off once it sees the node Ready, as for any node. The stand-in taint is put back if a
	// cluster started before it existed lacks it.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, t := range node.Spec.Taints {
			if t.MatchTaint(&taint) {
				return nil
			}
		}
		node.Spec.Taints = append(node.Spec.Taints, taint)
		_, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node %s taint: %w", name, err)
	}
	return nil
}
