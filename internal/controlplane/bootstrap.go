package controlplane

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// bootstrap does what a controller-manager would, since none runs: the service accounts and root
// CA ConfigMaps of the system namespaces, and the kubelet-less node.
func (c *Cluster) bootstrap(ctx context.Context) error {
	for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem} {
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	if c.opts.StandinNodeName != "" {
		return c.ensureStandinNode(ctx)
	}
	return nil
}

// EnsureNamespace creates namespace ns if needed, with what pods in it need and no controller
// provides here: the `default` service account (the ServiceAccount admission plugin refuses pods
// without it) and the `kube-root-ca.crt` ConfigMap (service-account token volumes mount it).
func (c *Cluster) EnsureNamespace(ctx context.Context, ns string) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(c.CAFile())
	if err != nil {
		return err
	}
	return ensureNamespace(ctx, cs, ns, string(ca))
}

func ensureNamespace(ctx context.Context, cs kubernetes.Interface, ns, ca string) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("service account %s/default: %w", ns, err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"},
		Data:       map[string]string{"ca.crt": ca},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("configmap %s/kube-root-ca.crt: %w", ns, err)
	}
	return nil
}

// ensureStandinNode registers the kubelet-less node: Ready, reachable (for whatever serves its
// kubelet port) on 127.0.0.1. Pods bound to it never run; tests write their statuses.
func (c *Cluster) ensureStandinNode(ctx context.Context) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	name := c.opts.StandinNodeName
	node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"oomwatch.dev/standin":   "true",
			}},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
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
	node, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil || len(node.Spec.Taints) == 0 {
		return err
	}
	// Node admission taints a new node not-ready until a node controller says otherwise; none
	// runs here, and this node is as ready as it will ever be.
	node.Spec.Taints = nil
	_, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	return err
}
