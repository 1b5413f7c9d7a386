// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Namespaces that pods can run in: created, then waited for until the controller-manager has
// filled them.

package controlplane

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// EnsureNamespace creates namespace ns if needed and waits until the controller-manager has
// made what pods in it need: the `default` service account (the ServiceAccount admission plugin
// refuses pods without it) and the `kube-root-ca.crt` ConfigMap (service-account token volumes
// mount it).
func (c *Cluster) EnsureNamespace(ctx context.Context, ns string) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return c.waitFor(ctx, controllerManager, "service account default and ConfigMap kube-root-ca.crt in namespace "+ns,
		func(ctx context.Context) bool { return namespaceReady(ctx, cs, ns) })
}

func namespaceReady(ctx context.Context, cs kubernetes.Interface, ns string) bool {
	if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return false
	}
	_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	return err == nil
}
