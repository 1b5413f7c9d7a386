// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package kustomize builds a kustomization into the multi-document YAML that `kubectl apply -k`
// sends, with the kustomize library kubectl itself embeds, so that tests apply and inspect exactly
// what a user gets from deploy/.
package kustomize

import (
	"fmt"
	"io/fs"
	"path"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Build runs `kustomize build dir` on this host's file system. An overlay kept elsewhere, e.g.
// in a test's temporary folder, names deploy/ by its path relative to the overlay
// (filepath.Rel): kustomize refuses an absolute one.
func Build(dir string) ([]byte, error) {
	return build(filesys.MakeFsOnDisk(), dir)
}

// BuildFS runs `kustomize build dir` on fsys, e.g. deploy.Manifests; dir is a path of fsys ("."
// for its root).
func BuildFS(fsys fs.FS, dir string) ([]byte, error) {
	mem := filesys.MakeFsInMemory()
	if err := copyInto(mem, fsys, "/"); err != nil {
		return nil, err
	}
	return build(mem, path.Join("/", dir))
}

// BuildOverlay runs `kustomize build` on an overlay, whose kustomization.yaml is kustomization,
// kept in a folder "overlay" beside base, which is put at basePath (e.g. "deploy"): the overlay
// names it as ../<basePath>, as a user's overlay beside their copy of deploy/ does.
func BuildOverlay(base fs.FS, basePath, kustomization string) ([]byte, error) {
	mem := filesys.MakeFsInMemory()
	if err := copyInto(mem, base, path.Join("/", basePath)); err != nil {
		return nil, err
	}
	if err := mem.WriteFile("/overlay/kustomization.yaml", []byte(kustomization)); err != nil {
		return nil, err
	}
	return build(mem, "/overlay")
}

// copyInto writes every file of fsys into mem under dir.
func copyInto(mem filesys.FileSystem, fsys fs.FS, dir string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join(dir, p), b)
	})
}

func build(fsys filesys.FileSystem, dir string) ([]byte, error) {
	opts := krusty.MakeDefaultOptions()
	// As kubectl: the kustomization's sortOptions, else the legacy order, which puts namespaces
	// and other cluster-wide objects before what they hold and refer to.
	opts.Reorder = krusty.ReorderOptionUnspecified
	resources, err := krusty.MakeKustomizer(opts).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return resources.AsYaml()
}
