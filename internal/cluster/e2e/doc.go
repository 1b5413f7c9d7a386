// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package e2e holds the end-to-end tests: the unmodified collector binary against the local
// cluster (a real kube-apiserver, etcd, kubelet and containerd on this machine, where the kernel
// really OOM-kills containers, and a kubelet-less node whose pod statuses the tests write),
// exporting over OTLP to a backend that keeps what it receives. The assertions are on what the
// backend got. They run with OOMWATCH_E2E=1, as root, after make collector cluster-bin
// cluster-deps (make e2e does all of it); otherwise they skip.
package e2e
