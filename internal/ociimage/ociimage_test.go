package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readArchive returns the regular files of a tar stream by name.
func readArchive(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		require.NotContains(t, files, h.Name, "entry written twice")
		files[h.Name] = b
	}
}

func blob(t *testing.T, files map[string][]byte, d Descriptor) []byte {
	t.Helper()
	require.True(t, strings.HasPrefix(d.Digest, "sha256:"), d.Digest)
	b, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
	require.True(t, ok, "blob %s missing", d.Digest)
	assert.Equal(t, d.Digest, digest(b), "blob content does not match its digest")
	assert.Equal(t, d.Size, int64(len(b)))
	return b
}

func testImage() Image {
	return Image{
		Name:       "docker.io/oomwatch/workload:dev",
		Files:      []File{{Path: "/bin/workload", Mode: 0o755, Data: []byte("#!binary")}},
		Entrypoint: []string{"/bin/workload"},
		Env:        []string{"WORKLOAD_MODE=steady"},
	}
}

func TestWriteLayout(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, Write(&buf, testImage()))
	files := readArchive(t, &buf)

	assert.JSONEq(t, `{"imageLayoutVersion":"1.0.0"}`, string(files["oci-layout"]))

	var idx Index
	require.NoError(t, json.Unmarshal(files["index.json"], &idx))
	assert.Equal(t, 2, idx.SchemaVersion)
	assert.Equal(t, MediaTypeIndex, idx.MediaType)
	require.Len(t, idx.Manifests, 1)
	md := idx.Manifests[0]
	assert.Equal(t, MediaTypeManifest, md.MediaType)
	assert.Equal(t, "docker.io/oomwatch/workload:dev", md.Annotations[AnnotationContainerdRef])
	assert.Equal(t, "dev", md.Annotations[AnnotationRefName])
	assert.Equal(t, &Platform{Architecture: "amd64", OS: "linux"}, md.Platform)

	var m Manifest
	require.NoError(t, json.Unmarshal(blob(t, files, md), &m))
	assert.Equal(t, MediaTypeManifest, m.MediaType)
	require.Len(t, m.Layers, 1)
	assert.Equal(t, MediaTypeLayer, m.Layers[0].MediaType)
	assert.Equal(t, MediaTypeConfig, m.Config.MediaType)

	var cfg Config
	require.NoError(t, json.Unmarshal(blob(t, files, m.Config), &cfg))
	assert.Equal(t, "linux", cfg.OS)
	assert.Equal(t, "amd64", cfg.Architecture)
	assert.Equal(t, []string{"/bin/workload"}, cfg.Config.Entrypoint)
	assert.Equal(t, []string{"WORKLOAD_MODE=steady"}, cfg.Config.Env)
	assert.Equal(t, "layers", cfg.RootFS.Type)

	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, m.Layers[0])))
	require.NoError(t, err)
	layer, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, []string{digest(layer)}, cfg.RootFS.DiffIDs, "diff_id must be the digest of the uncompressed layer")

	var names []string
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names = append(names, h.Name)
		if h.Name == "bin/workload" {
			assert.Equal(t, int64(0o755), h.Mode)
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			assert.Equal(t, "#!binary", string(b))
		}
	}
	assert.Equal(t, []string{"bin/", "bin/workload"}, names, "parent directories come before their files")
}

func TestWriteIsReproducible(t *testing.T) {
	t.Parallel()
	var a, b bytes.Buffer
	require.NoError(t, Write(&a, testImage()))
	require.NoError(t, Write(&b, testImage()))
	assert.Equal(t, a.Bytes(), b.Bytes())
}

func TestWriteSharedParentDirectoriesOnce(t *testing.T) {
	t.Parallel()
	files, err := layerTar([]File{
		{Path: "/usr/bin/b", Data: []byte("b")},
		{Path: "usr/bin/a", Data: []byte("a")},
		{Path: "/etc/x", Data: []byte("x")},
	})
	require.NoError(t, err)
	var names []string
	tr := tar.NewReader(bytes.NewReader(files))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
	assert.Equal(t, []string{"etc/", "etc/x", "usr/", "usr/bin/", "usr/bin/a", "usr/bin/b"}, names)
}

func TestWriteRejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		img  Image
		want string
	}{
		"no name":    {Image{Files: testImage().Files}, "image name is empty"},
		"no files":   {Image{Name: "x:1"}, "image has no files"},
		"root path":  {Image{Name: "x:1", Files: []File{{Path: "/"}}}, `file path "/" names no file`},
		"same twice": {Image{Name: "x:1", Files: []File{{Path: "/a"}, {Path: "a"}}}, `file "a" given twice`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := Write(io.Discard, tc.img)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestTagOf(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "dev", tagOf("docker.io/oomwatch/pause:dev"))
	assert.Equal(t, "latest", tagOf("localhost:5000/oomwatch/pause"))
	assert.Equal(t, "3.10", tagOf("localhost:5000/pause:3.10"))
}
