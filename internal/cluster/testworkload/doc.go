// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package testworkload holds the programs that run in the local cluster's containers: pause, the
// sandbox's placeholder process, and workload, whose memory behaviour is chosen by environment
// variables so tests and the demo can make the kernel OOM-kill containers on purpose. Both are
// built as static binaries and packed into single-file images (see BuildImages).
package testworkload
