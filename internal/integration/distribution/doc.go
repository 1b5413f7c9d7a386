// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package distribution checks the collector that builder-config.yaml builds: its components, the
// configurations that deploy/ ships, running as the cluster runs them, and the demo's under
// testdata/config.
package distribution
