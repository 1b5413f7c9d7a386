// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package helmchart renders and installs deploy/helm/oomwatch with Helm's own code (the Helm v4
// SDK): Render as `helm template` does, Install as `helm install` does, so that tests check what
// a user of Helm gets.
package helmchart

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Dir is the chart's folder, relative to the repository's root.
const Dir = "deploy/helm/oomwatch"

// Load reads the chart from the repository whose root is root.
func Load(root string) (*chartv2.Chart, error) { return loader.Load(filepath.Join(root, Dir)) }

// Render returns the manifest of a release named name in namespace, with values over the
// chart's, as `helm template` writes it: rendered on the client, the values checked against
// values.schema.json.
func Render(ch *chartv2.Chart, name, namespace string, values map[string]any) (string, error) {
	cfg := action.NewConfiguration()
	cfg.Releases = storage.Init(driver.NewMemory())
	cfg.KubeClient = &kubefake.PrintingKubeClient{Out: io.Discard}
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.Replace = true
	install.ReleaseName = name
	install.Namespace = namespace
	return manifest(install.Run(ch, values))
}

// Install installs a release named name of the chart into namespace of the cluster of
// kubeconfig, as `helm install --create-namespace --wait` does, and returns its manifest.
func Install(ctx context.Context, kubeconfig string, ch *chartv2.Chart, name, namespace string, values map[string]any, timeout time.Duration) (string, error) {
	cfg, err := configuration(kubeconfig, namespace)
	if err != nil {
		return "", err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName = name
	install.Namespace = namespace
	install.CreateNamespace = true
	install.WaitStrategy = kube.StatusWatcherStrategy
	install.Timeout = timeout
	return manifest(install.RunWithContext(ctx, ch, values))
}

// Uninstall removes the release, as `helm uninstall` does.
func Uninstall(kubeconfig, name, namespace string) error {
	cfg, err := configuration(kubeconfig, namespace)
	if err != nil {
		return err
	}
	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy = kube.HookOnlyStrategy
	_, err = uninstall.Run(name)
	return err
}

func configuration(kubeconfig, namespace string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &namespace
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, err
	}
	return cfg, nil
}

// manifest is the manifest of the release an install returned.
func manifest(rel any, err error) (string, error) {
	if err != nil {
		return "", err
	}
	switch r := rel.(type) {
	case *release.Release:
		return r.Manifest, nil
	case release.Release:
		return r.Manifest, nil
	default:
		return "", fmt.Errorf("a release of type %T", rel)
	}
}

// Documents splits a manifest into its YAML documents, without the empty ones.
func Documents(manifest string) []string {
	var out []string
	for _, doc := range strings.Split(manifest, "\n---") {
		if strings.TrimSpace(doc) != "" {
			out = append(out, doc)
		}
	}
	return out
}
