// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package deploy holds what a cluster gets: the agent tier (a DaemonSet with least-privilege
// RBAC, this folder), the gateway tier (gateway/) and the collector configuration of each, which
// kustomize turns into their ConfigMaps. They are embedded so tests can build and apply exactly
// what ships (internal/packaging/kustomize).
package deploy

import "embed"

// Manifests holds every manifest and collector configuration, by its path in this folder.
//
//go:embed *.yaml gateway/*.yaml gateway/components/*/*.yaml components/*/*.yaml grafana/*.json prometheus-operator/*.yaml
var Manifests embed.FS
