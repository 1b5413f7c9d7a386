// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestDeleteWorkloadLetsTheGarbageCollectorRemoveThePods: every Deployment and Job is deleted
// with background propagation (the batch API would orphan a Job's pods), and the call returns
// once their pods are gone. The fake clientset has no garbage collector: deleting the Job
// removes the last pod here, as the real one would.
func TestDeleteWorkloadLetsTheGarbageCollectorRemoveThePods(t *testing.T) {
	t.Parallel()
	w := demoWorkload()
	var objects []runtime.Object
	for _, d := range w.Deployments {
		objects = append(objects, d)
	}
	for _, j := range w.Jobs {
		objects = append(objects, j)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nightly-report-7hq2m", Namespace: "demo-batch"}}
	cs := fake.NewClientset(append(objects, pod)...)
	cs.PrependReactor("delete", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return false, nil, cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), pod.Namespace, pod.Name)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, deleteWorkload(ctx, cs, w))

	deleted := map[string]metav1.DeletionPropagation{}
	for _, a := range cs.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && a.GetResource().Resource != "pods" {
			deleted[a.GetResource().Resource+" "+d.GetNamespace()+"/"+d.GetName()] = *d.GetDeleteOptions().PropagationPolicy
		}
	}
	assert.Equal(t, map[string]metav1.DeletionPropagation{
		"deployments demo-shop/frontend":     metav1.DeletePropagationBackground,
		"deployments demo-shop/cart":         metav1.DeletePropagationBackground,
		"deployments demo-payments/ledger":   metav1.DeletePropagationBackground,
		"deployments demo-payments/accounts": metav1.DeletePropagationBackground,
		"deployments demo-batch/thumbnailer": metav1.DeletePropagationBackground,
		"jobs demo-batch/nightly-report":     metav1.DeletePropagationBackground,
	}, deleted)
}

// TestDeleteWorkloadNeverCreated: a demo that failed before creating its workload still
// cleans up without an error.
func TestDeleteWorkloadNeverCreated(t *testing.T) {
	t.Parallel()
	require.NoError(t, deleteWorkload(context.Background(), fake.NewClientset(), demoWorkload()))
}

// TestDeleteWorkloadSaysWhatIsLeft: pods that outlive the deadline are named by their number.
func TestDeleteWorkloadSaysWhatIsLeft(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ledger-5d8f7c9b4-x2k9p", Namespace: "demo-payments"}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := deleteWorkload(ctx, cs, demoWorkload())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "pods not yet gone: 1")
}
