// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package containerimage builds single-layer linux/amd64 container images from files held in
// memory, writes them as tarballs that both `docker load` and `ctr images import` read, and pushes
// them to registries.
//
// An image depends on its inputs only: every entry of the layer has the same time, owner root:root
// and a fixed place in path order, and the image config carries the same creation time, so the same
// files and config give the same digest on any machine.
package containerimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the time of every layer entry and of the image's creation: a constant, so that the
// time of a build never reaches the digest.
var epoch = time.Unix(0, 0).UTC()

// The one platform the images are built for: the collector and the local cluster run there.
const (
	imageOS   = "linux"
	imageArch = "amd64"
)

// File is one regular file of the image, owned by root:root. Its parent directories are added
// with mode 0755.
type File struct {
	// Path is absolute and clean: "/etc/passwd".
	Path string
	// Mode holds the permission bits only.
	Mode fs.FileMode
	Data []byte
}

// Config is what a runtime reads to start a container of the image.
type Config struct {
	Entrypoint []string
	// Cmd holds the default arguments, replaced by those of a Kubernetes container's args.
	Cmd []string
	// User is "uid:gid", or a name that the image's /etc/passwd holds.
	User       string
	Env        []string
	WorkingDir string
}

// Build makes the image holding files, in any order, in one layer, started as cfg says.
func Build(files []File, cfg Config) (v1.Image, error) {
	layerTar, err := layerTar(files)
	if err != nil {
		return nil, err
	}
	// Compressing a collector-sized layer takes seconds: it is done once, for the digest, and
	// reused for the tarball and the registry. On the collector, gzip's best compression took
	// twice the time of its default level to save under 1% of the size.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressedCaching, tarball.WithCompressionLevel(gzip.DefaultCompression))
	if err != nil {
		return nil, fmt.Errorf("compressing the layer: %w", err)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: imageArch,
		OS:           imageOS,
		Created:      v1.Time{Time: epoch},
		Config: v1.Config{
			Entrypoint: cfg.Entrypoint,
			Cmd:        cfg.Cmd,
			User:       cfg.User,
			Env:        cfg.Env,
			WorkingDir: cfg.WorkingDir,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: epoch}}})
}

// ParseReference reads a reference that names registry, repository and tag, as a tarball
// needs: `docker load` and containerd name the image after it.
func ParseReference(ref string) (name.Tag, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q must name registry, repository and tag, as in docker.io/oomwatch/otelcol-oomwatch:dev: %w", ref, err)
	}
	return tag, nil
}

// WriteTarball writes img tagged ref to the file at path in the archive format of `docker save`,
// which `docker load` and `ctr images import` read. The file appears complete or not at all.
func WriteTarball(path, ref string, img v1.Image) error {
	tag, err := ParseReference(ref)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tarball.Write(tag, img, tmp); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Push uploads img to the registry that ref names, with the credentials that docker login and
// the credential helpers of ~/.docker/config.json hold (anonymous when none), and returns the
// digest the registry knows it by.
func Push(ctx context.Context, ref string, img v1.Image) (v1.Hash, error) {
	tag, err := ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return img.Digest()
}

// layerTar makes the uncompressed layer: every file and parent directory once, in path order,
// each with the same owner and time.
func layerTar(files []File) ([]byte, error) {
	if len(files) == 0 {
		return nil, errors.New("an image needs at least one file")
	}
	byName := map[string]File{}
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("file path %q must be absolute and clean, as in /etc/passwd", f.Path)
		}
		if f.Mode == 0 || f.Mode&^fs.ModePerm != 0 {
			return nil, fmt.Errorf("file %s: mode %v must be permission bits, and not none", f.Path, f.Mode)
		}
		rel := strings.TrimPrefix(f.Path, "/")
		if _, ok := byName[rel]; ok {
			return nil, fmt.Errorf("file %s given twice", f.Path)
		}
		byName[rel] = f
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	names := make([]string, 0, len(byName)+len(dirs))
	for d := range dirs {
		if _, ok := byName[d]; ok {
			return nil, fmt.Errorf("file /%s is also the directory of another file", d)
		}
		names = append(names, d)
	}
	for rel := range byName {
		names = append(names, rel)
	}
	// A directory is a prefix of its entries' names, so it comes before them.
	slices.Sort(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f, isFile := byName[n]
		h := &tar.Header{Typeflag: tar.TypeDir, Name: n + "/", Mode: 0o755, Uid: 0, Gid: 0, ModTime: epoch}
		if isFile {
			h.Typeflag, h.Name, h.Mode, h.Size = tar.TypeReg, n, int64(f.Mode), int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry /%s: %w", n, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
