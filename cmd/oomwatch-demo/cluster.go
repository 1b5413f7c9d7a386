// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
)

// The service account deploy/ ships for the agent, bound to its least-privilege ClusterRole.
const (
	agentNamespace      = "oomwatch"
	agentServiceAccount = "oomwatch-agent"
)

// clusterRunning reports whether something already answers on the API server's port: a cluster
// started by `make cluster-up` or by tests. The demo tears down what it starts, so it must not
// start on top of someone else's cluster.
func clusterRunning(port int) bool {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// holdClusterLock takes the lock that controlplane takes around every start and teardown of the
// cluster in dir, and keeps it until release is called. While the demo holds it, a test that
// starts a cluster waits for the demo to end, rather than joining the demo's cluster and having
// it torn down under it. It gives up when ctx ends.
func holdClusterLock(ctx context.Context, dir string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// installAgentRBAC applies deploy/'s namespace and RBAC, exactly as shipped.
func installAgentRBAC(ctx context.Context, c *controlplane.Cluster) error {
	for _, f := range []string{"namespace.yaml", "rbac.yaml"} {
		b, err := fs.ReadFile(deploy.Manifests, f)
		if err != nil {
			return err
		}
		if err := c.Apply(ctx, b); err != nil {
			return fmt.Errorf("applying deploy/%s: %w", f, err)
		}
	}
	return c.EnsureNamespace(ctx, agentNamespace)
}

// createWorkload creates the namespaces, the Deployments and the Job of the demo.
func createWorkload(ctx context.Context, c *controlplane.Cluster, cs kubernetes.Interface, w workload) error {
	for _, ns := range workloadNamespaces {
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	for _, d := range w.Deployments {
		if _, err := cs.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
	}
	for _, j := range w.Jobs {
		if _, err := cs.BatchV1().Jobs(j.Namespace).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("job %s/%s: %w", j.Namespace, j.Name, err)
		}
	}
	return nil
}

// deleteWorkload deletes the Deployments and the Job, as a user would, and waits until the
// garbage collector and the kubelet have removed their pods, so that the teardown finds no
// container of theirs. What was never created is not an error.
func deleteWorkload(ctx context.Context, cs kubernetes.Interface, w workload) error {
	// The batch API orphans a Job's pods unless told otherwise, for compatibility; the
	// background propagation is what kubectl delete asks for.
	opts := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}
	var errs []error
	for _, d := range w.Deployments {
		if err := cs.AppsV1().Deployments(d.Namespace).Delete(ctx, d.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err))
		}
	}
	for _, j := range w.Jobs {
		if err := cs.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("job %s/%s: %w", j.Namespace, j.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for {
		left, err := podsLeft(ctx, cs)
		if err == nil && left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("waiting for the pods to go: %w", err)
			}
			return fmt.Errorf("pods not yet gone: %d: %w", left, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// podsLeft counts the pods in the demo's namespaces.
func podsLeft(ctx context.Context, cs kubernetes.Interface) (int, error) {
	n := 0
	for _, ns := range workloadNamespaces {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		n += len(pods.Items)
	}
	return n, nil
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 right now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		if p := l.Addr().(*net.TCPAddr).Port; !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}
