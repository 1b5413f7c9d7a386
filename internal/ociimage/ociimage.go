// Package ociimage writes single-layer OCI image archives from files held in memory.
//
// No registry is reachable where the local cluster runs, so its images are made here: a static
// binary as the only file of one layer, written as an OCI image layout in a tar stream that
// `ctr images import` accepts. Only the standard library is used, so the archive can be made
// before anything else is built.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// Media types and annotations of the OCI image specification, and the one containerd reads to
// name an imported image.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	AnnotationRefName       = "org.opencontainers.image.ref.name"
	AnnotationContainerdRef = "io.containerd.image.name"
)

// epoch is the modification time of every entry, so the same input gives the same digests.
var epoch = time.Unix(0, 0).UTC()

// File is one regular file of the layer.
type File struct {
	// Path inside the image, absolute or relative to its root ("/pause" and "pause" are the same).
	Path string
	Mode int64
	Data []byte
}

// Image describes the image to write.
type Image struct {
	// Name is the full reference the runtime will know the image by, e.g. "docker.io/oomwatch/pause:dev".
	Name       string
	OS         string // default "linux"
	Arch       string // default "amd64"
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
}

// Descriptor points at a blob, as in the OCI specification.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform names the operating system and CPU architecture an image runs on.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Index is the entry point of an image layout (index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest lists the config and layers of one image.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Config is the image configuration blob.
type Config struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Created      string          `json:"created"`
	Config       ContainerConfig `json:"config"`
	RootFS       RootFS          `json:"rootfs"`
}

// ContainerConfig holds what the runtime uses to start a container of the image.
type ContainerConfig struct {
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

// RootFS lists the digests of the uncompressed layers.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// Write writes img as an OCI image layout tar stream to w. The output depends only on img.
func Write(w io.Writer, img Image) error {
	if err := img.validate(); err != nil {
		return err
	}
	osName, arch := img.OS, img.Arch
	if osName == "" {
		osName = "linux"
	}
	if arch == "" {
		arch = "amd64"
	}

	layerTar, err := layerTar(img.Files)
	if err != nil {
		return err
	}
	var layerGz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&layerGz, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(layerTar); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}

	cfg, err := json.Marshal(Config{
		Architecture: arch,
		OS:           osName,
		Created:      epoch.Format(time.RFC3339),
		Config: ContainerConfig{
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			Env:        img.Env,
			WorkingDir: img.WorkingDir,
		},
		RootFS: RootFS{Type: "layers", DiffIDs: []string{digest(layerTar)}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(Manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeManifest,
		Config:        Descriptor{MediaType: MediaTypeConfig, Digest: digest(cfg), Size: int64(len(cfg))},
		Layers: []Descriptor{{
			MediaType: MediaTypeLayer, Digest: digest(layerGz.Bytes()), Size: int64(layerGz.Len()),
		}},
	})
	if err != nil {
		return err
	}
	index, err := json.Marshal(Index{
		SchemaVersion: 2,
		MediaType:     MediaTypeIndex,
		Manifests: []Descriptor{{
			MediaType: MediaTypeManifest,
			Digest:    digest(manifest),
			Size:      int64(len(manifest)),
			Annotations: map[string]string{
				AnnotationContainerdRef: img.Name,
				AnnotationRefName:       tagOf(img.Name),
			},
			Platform: &Platform{Architecture: arch, OS: osName},
		}},
	})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(manifest), manifest},
		{blobPath(cfg), cfg},
		{blobPath(layerGz.Bytes()), layerGz.Bytes()},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := writeFile(tw, e.name, 0o644, e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (img Image) validate() error {
	if img.Name == "" {
		return errors.New("ociimage: image name is empty")
	}
	if len(img.Files) == 0 {
		return errors.New("ociimage: image has no files")
	}
	seen := map[string]bool{}
	for _, f := range img.Files {
		p := cleanPath(f.Path)
		if p == "" {
			return fmt.Errorf("ociimage: file path %q names no file", f.Path)
		}
		if seen[p] {
			return fmt.Errorf("ociimage: file %q given twice", f.Path)
		}
		seen[p] = true
	}
	return nil
}

// layerTar makes the uncompressed layer: the files, sorted, with their parent directories.
func layerTar(files []File) ([]byte, error) {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return cleanPath(sorted[i].Path) < cleanPath(sorted[j].Path) })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range sorted {
		p := cleanPath(f.Path)
		var parents []string
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if dirs[parents[i]] {
				continue
			}
			dirs[parents[i]] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := writeFile(tw, p, mode, f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch,
	}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func cleanPath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(b []byte) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:")
}

// tagOf returns the tag of a reference ("latest" when it has none), the short name an OCI
// layout gives a manifest.
func tagOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}
