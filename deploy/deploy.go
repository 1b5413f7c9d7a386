// Package deploy holds the Kubernetes manifests of the collector: the agent tier (a DaemonSet with
// least-privilege RBAC) and a gateway example. They are embedded so tests can apply exactly what
// ships.
package deploy

import "embed"

// Manifests holds every manifest, by its path in this folder.
//
//go:embed *.yaml gateway/*.yaml
var Manifests embed.FS
