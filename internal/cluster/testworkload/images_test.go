// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package testworkload

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuildImages builds both images and checks that each archive names its image and holds one
// layer with one static linux/amd64 executable, the image's entrypoint.
func TestBuildImages(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles two programs")
	}
	moduleDir, err := filepath.Abs("../../..")
	require.NoError(t, err)
	archives, err := BuildImages(context.Background(), moduleDir, t.TempDir())
	require.NoError(t, err)
	require.Len(t, archives, 2)
	assert.Equal(t, PauseImage, archives[0].Name)
	assert.Equal(t, WorkloadImage, archives[1].Name)

	for _, a := range archives {
		tag, err := name.NewTag(a.Name)
		require.NoError(t, err)
		img, err := tarball.ImageFromPath(a.Path, &tag)
		require.NoError(t, err, "the archive names the image %s", a.Name)

		cf, err := img.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, "linux/amd64", cf.Platform().String())
		require.Len(t, cf.Config.Entrypoint, 1)

		layers, err := img.Layers()
		require.NoError(t, err)
		require.Len(t, layers, 1)
		rc, err := layers[0].Uncompressed()
		require.NoError(t, err)
		layer := map[string][]byte{}
		tr := tar.NewReader(rc)
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
		require.NoError(t, rc.Close())
		require.Len(t, layer, 1, "the binary is the only file")
		bin, ok := layer[strings.TrimPrefix(cf.Config.Entrypoint[0], "/")]
		require.True(t, ok, "entrypoint %s not in the layer", cf.Config.Entrypoint[0])
		f, err := elf.NewFile(bytes.NewReader(bin))
		require.NoError(t, err)
		assert.Equal(t, elf.EM_X86_64, f.Machine)
		for _, p := range f.Progs {
			assert.NotEqual(t, elf.PT_INTERP, p.Type, "%s must be static: there is no libc in the image", a.Name)
		}
	}
}
