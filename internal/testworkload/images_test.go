package testworkload

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/internal/ociimage"
)

// TestBuildImages builds both images and checks that each archive holds one layer with one static
// linux/amd64 executable, the image's entrypoint.
func TestBuildImages(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles two programs")
	}
	moduleDir, err := filepath.Abs("../..")
	require.NoError(t, err)
	archives, err := BuildImages(context.Background(), moduleDir, t.TempDir())
	require.NoError(t, err)
	require.Len(t, archives, 2)
	assert.Equal(t, PauseImage, archives[0].Name)
	assert.Equal(t, WorkloadImage, archives[1].Name)

	for _, a := range archives {
		files := untar(t, a.Path)
		var idx ociimage.Index
		require.NoError(t, json.Unmarshal(files["index.json"], &idx))
		require.Len(t, idx.Manifests, 1)
		assert.Equal(t, a.Name, idx.Manifests[0].Annotations[ociimage.AnnotationContainerdRef])

		var m ociimage.Manifest
		require.NoError(t, json.Unmarshal(files[blobName(idx.Manifests[0].Digest)], &m))
		var cfg ociimage.Config
		require.NoError(t, json.Unmarshal(files[blobName(m.Config.Digest)], &cfg))
		require.Len(t, cfg.Config.Entrypoint, 1)
		require.Len(t, m.Layers, 1)

		zr, err := gzip.NewReader(bytes.NewReader(files[blobName(m.Layers[0].Digest)]))
		require.NoError(t, err)
		layer := map[string][]byte{}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			layer[h.Name] = b
		}
		require.Len(t, layer, 1, "the binary is the only file")
		bin, ok := layer[strings.TrimPrefix(cfg.Config.Entrypoint[0], "/")]
		require.True(t, ok, "entrypoint %s not in the layer", cfg.Config.Entrypoint[0])
		f, err := elf.NewFile(bytes.NewReader(bin))
		require.NoError(t, err)
		assert.Equal(t, elf.EM_X86_64, f.Machine)
		for _, p := range f.Progs {
			assert.NotEqual(t, elf.PT_INTERP, p.Type, "%s must be static: there is no libc in the image", a.Name)
		}
	}
}

func untar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[h.Name] = b
	}
}

func blobName(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}
