// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Server-side apply of manifests as cluster-admin, for real or as a dry run.

package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// Apply server-side applies every object of a multi-document YAML manifest, in order, as
// cluster-admin. Tests use it to install exactly what deploy/ ships.
func (c *Cluster) Apply(ctx context.Context, manifest []byte) error {
	return c.apply(ctx, manifest, nil)
}

// ApplyDryRun sends every object of the manifest as Apply does, but as a dry run: the API server
// validates and admits each, and stores none. A DaemonSet checked this way runs no pods.
func (c *Cluster) ApplyDryRun(ctx context.Context, manifest []byte) error {
	return c.apply(ctx, manifest, []string{metav1.DryRunAll})
}

func (c *Cluster) apply(ctx context.Context, manifest []byte, dryRun []string) error {
	cfg, err := c.RESTConfig()
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var obj unstructured.Unstructured
		if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil {
			return err
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		res := dyn.Resource(m.Resource)
		var ri dynamic.ResourceInterface = res
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = res.Namespace(obj.GetNamespace())
		}
		if _, err := ri.Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: "oomwatch-tests", Force: true, DryRun: dryRun}); err != nil {
			return fmt.Errorf("applying %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
}
