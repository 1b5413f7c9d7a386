// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package k8scontainerreceiver reports, per Kubernetes container, every termination the API
// server shows (with the container instance it ended) as a 0/1 OOM-kill flag, together with the
// container's CPU and memory from the kubelet's Summary API and its limits from the pod spec.
//
//go:generate go tool -modfile=../../tools/go.mod mdatagen metadata.yaml
package k8scontainerreceiver
