// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package containerimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testRef = "docker.io/oomwatch/test:dev"

func testFiles() []File {
	return []File{
		{Path: "/app", Mode: 0o755, Data: []byte("\x7fELF not really")},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: []byte("-----BEGIN CERTIFICATE-----\n")},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("nonroot:x:65532:65532::/:/sbin/nologin\n")},
	}
}

func testConfig() Config {
	return Config{
		Entrypoint: []string{"/app"},
		Cmd:        []string{"--config=/etc/app.yaml"},
		User:       "65532:65532",
		Env:        []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}
}

func build(t *testing.T, files []File, cfg Config) v1.Image {
	t.Helper()
	img, err := Build(files, cfg)
	require.NoError(t, err)
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	require.NoError(t, err)
	return d
}

// entry is a layer entry as a runtime unpacks it.
type entry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	unix     int64
	data     string
}

func layerEntries(t *testing.T, img v1.Image) []entry {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer func() { _ = rc.Close() }()
	var out []entry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, entry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.Unix(), string(b)})
	}
}

func TestSameInputsSameImage(t *testing.T) {
	t.Parallel()
	first := build(t, testFiles(), testConfig())
	reversed := testFiles()
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	second := build(t, reversed, testConfig())
	assert.Equal(t, digestOf(t, first), digestOf(t, second), "the order of the files must not matter")

	// The tarball holds no time either: the same image gives the same bytes.
	dir := t.TempDir()
	var sums [2][32]byte
	for i, img := range []v1.Image{first, second} {
		p := filepath.Join(dir, "image.tar")
		require.NoError(t, WriteTarball(p, testRef, img))
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		sums[i] = sha256.Sum256(b)
	}
	assert.Equal(t, sums[0], sums[1])
}

func TestEveryInputReachesTheDigest(t *testing.T) {
	t.Parallel()
	base := digestOf(t, build(t, testFiles(), testConfig()))
	changes := map[string]func(files []File, cfg *Config){
		"data":       func(files []File, _ *Config) { files[0].Data = []byte("other") },
		"mode":       func(files []File, _ *Config) { files[0].Mode = 0o700 },
		"path":       func(files []File, _ *Config) { files[0].Path = "/bin/app" },
		"entrypoint": func(_ []File, cfg *Config) { cfg.Entrypoint = []string{"/other"} },
		"cmd":        func(_ []File, cfg *Config) { cfg.Cmd = nil },
		"user":       func(_ []File, cfg *Config) { cfg.User = "0:0" },
		"env":        func(_ []File, cfg *Config) { cfg.Env = nil },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			files, cfg := testFiles(), testConfig()
			change(files, &cfg)
			assert.NotEqual(t, base, digestOf(t, build(t, files, cfg)))
		})
	}
}

func TestLayer(t *testing.T) {
	t.Parallel()
	got := layerEntries(t, build(t, testFiles(), testConfig()))
	want := []entry{
		{"app", tar.TypeReg, 0o755, 0, 0, 0, "\x7fELF not really"},
		{"etc/", tar.TypeDir, 0o755, 0, 0, 0, ""},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, 0, "nonroot:x:65532:65532::/:/sbin/nologin\n"},
		{"etc/ssl/", tar.TypeDir, 0o755, 0, 0, 0, ""},
		{"etc/ssl/certs/", tar.TypeDir, 0o755, 0, 0, 0, ""},
		{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0, 0, "-----BEGIN CERTIFICATE-----\n"},
	}
	assert.Equal(t, want, got)
}

// TestTarball reads the tarball back as `docker load` does: by the tag in its manifest.json.
func TestTarball(t *testing.T) {
	t.Parallel()
	img := build(t, testFiles(), testConfig())
	p := filepath.Join(t.TempDir(), "sub", "image.tar")
	require.NoError(t, WriteTarball(p, testRef, img))

	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	require.NoError(t, err)
	require.Len(t, m, 1)
	assert.Equal(t, []string{testRef}, m[0].RepoTags)

	tag, err := name.NewTag(testRef)
	require.NoError(t, err)
	loaded, err := tarball.ImageFromPath(p, &tag)
	require.NoError(t, err)
	assert.Equal(t, digestOf(t, img), digestOf(t, loaded), "the tarball holds the image as built")

	cf, err := loaded.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "linux", cf.OS)
	assert.Equal(t, "amd64", cf.Architecture)
	assert.Equal(t, int64(0), cf.Created.Unix())
	assert.Equal(t, v1.Config{
		Entrypoint: []string{"/app"},
		Cmd:        []string{"--config=/etc/app.yaml"},
		User:       "65532:65532",
		Env:        []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}, cf.Config)
	assert.Equal(t, layerEntries(t, img), layerEntries(t, loaded))

	entries, err := os.ReadDir(filepath.Dir(p))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left")
}

func TestPush(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/oomwatch/test:dev"

	img := build(t, testFiles(), testConfig())
	pushed, err := Push(context.Background(), ref, img)
	require.NoError(t, err)
	assert.Equal(t, digestOf(t, img), pushed)

	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	pulled, err := remote.Image(tag)
	require.NoError(t, err)
	assert.Equal(t, pushed, digestOf(t, pulled))
	assert.Equal(t, layerEntries(t, img), layerEntries(t, pulled))
}

func TestPushUnreachableRegistry(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(registry.New())
	ref := strings.TrimPrefix(srv.URL, "http://") + "/oomwatch/test:dev"
	srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Push(ctx, ref, build(t, testFiles(), testConfig()))
	require.ErrorContains(t, err, "pushing "+ref)
}

func TestBadInputs(t *testing.T) {
	t.Parallel()
	one := func(f File) []File { return []File{f} }
	cases := map[string]struct {
		files []File
		err   string
	}{
		"no files":       {nil, "at least one file"},
		"relative path":  {one(File{Path: "app", Mode: 0o755}), `file path "app" must be absolute and clean`},
		"unclean path":   {one(File{Path: "/etc/../app", Mode: 0o755}), "must be absolute and clean"},
		"root":           {one(File{Path: "/", Mode: 0o755}), "must be absolute and clean"},
		"no mode":        {one(File{Path: "/app"}), "file /app: mode ---------- must be permission bits"},
		"directory mode": {one(File{Path: "/app", Mode: fs.ModeDir | 0o755}), "must be permission bits"},
		"twice": {
			[]File{{Path: "/app", Mode: 0o755}, {Path: "/app", Mode: 0o644}},
			"file /app given twice",
		},
		"file as directory": {
			[]File{{Path: "/etc", Mode: 0o644}, {Path: "/etc/passwd", Mode: 0o644}},
			"file /etc is also the directory of another file",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Build(c.files, testConfig())
			require.ErrorContains(t, err, c.err)
		})
	}
}

func TestBadReference(t *testing.T) {
	t.Parallel()
	img := build(t, testFiles(), testConfig())
	for _, ref := range []string{"", "oomwatch/test:dev", "docker.io/oomwatch/test", "docker.io/Oomwatch/test:dev"} {
		p := filepath.Join(t.TempDir(), "image.tar")
		err := WriteTarball(p, ref, img)
		require.ErrorContains(t, err, "must name registry, repository and tag", ref)
		_, statErr := os.Stat(p)
		assert.ErrorIs(t, statErr, fs.ErrNotExist, ref)

		_, err = Push(context.Background(), ref, img)
		require.ErrorContains(t, err, "must name registry, repository and tag", ref)
	}
}
