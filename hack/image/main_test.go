// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const caBundle = "-----BEGIN CERTIFICATE-----\nnot parsed, only copied\n-----END CERTIFICATE-----\n"

// A small static program stands in for the collector: the image only copies it.
var (
	staticOnce sync.Once
	staticBin  []byte
	staticErr  error
)

type inputs struct{ binary, statedir, caCerts string }

func testInputs(t *testing.T) inputs {
	t.Helper()
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "static")
		if err != nil {
			staticErr = err
			return
		}
		defer func() { _ = os.RemoveAll(dir) }()
		src := filepath.Join(dir, "main.go")
		if staticErr = os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o600); staticErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", filepath.Join(dir, "bin"), src)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GO111MODULE=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = err
			staticBin = out
			return
		}
		staticBin, staticErr = os.ReadFile(filepath.Join(dir, "bin"))
	})
	require.NoError(t, staticErr, "%s", staticBin)

	dir := t.TempDir()
	in := inputs{
		binary:   filepath.Join(dir, "otelcol-oomwatch"),
		statedir: filepath.Join(dir, "oomwatch-statedir"),
		caCerts:  filepath.Join(dir, "ca.crt"),
	}
	require.NoError(t, os.WriteFile(in.binary, staticBin, 0o600))
	// Another static binary: the two files of the image must stay apart.
	require.NoError(t, os.WriteFile(in.statedir, append(append([]byte(nil), staticBin...), 0), 0o600))
	require.NoError(t, os.WriteFile(in.caCerts, []byte(caBundle), 0o600))
	return in
}

func runImage(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

var digestRE = regexp.MustCompile(`@(sha256:[0-9a-f]{64})`)

func printedDigest(t *testing.T, out string) string {
	t.Helper()
	m := digestRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	return m[1]
}

type entry struct {
	name string
	mode int64
	data string
}

func files(t *testing.T, img v1.Image) []entry {
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
		out = append(out, entry{h.Name, h.Mode, string(b)})
	}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	in := testInputs(t)
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	const ref = "docker.io/oomwatch/otelcol-oomwatch:test"
	out, err := runImage(t, "build", "-binary", in.binary, "-statedir", in.statedir, "-ca-certs", in.caCerts, "-tag", ref, "-o", tarPath)
	require.NoError(t, err)
	assert.Contains(t, out, "wrote "+tarPath)

	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	img, err := tarball.ImageFromPath(tarPath, &tag)
	require.NoError(t, err)
	d, err := img.Digest()
	require.NoError(t, err)
	assert.Equal(t, printedDigest(t, out), d.String())

	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "linux/amd64", cf.Platform().String())
	assert.Equal(t, v1.Config{
		Entrypoint: []string{"/otelcol-oomwatch", "--config=/etc/otelcol-oomwatch/config.yaml"},
		User:       "65532:65532",
		Env:        []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}, cf.Config)

	// Every entry of the image: no shell, no package manager, nothing to run but the collector.
	bin, err := os.ReadFile(in.binary)
	require.NoError(t, err)
	prep, err := os.ReadFile(in.statedir)
	require.NoError(t, err)
	assert.Equal(t, []entry{
		{"etc/", 0o755, ""},
		{"etc/group", 0o644, "root:x:0:\nnonroot:x:65532:\n"},
		{"etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n"},
		{"etc/ssl/", 0o755, ""},
		{"etc/ssl/certs/", 0o755, ""},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, caBundle},
		{"oomwatch-statedir", 0o755, string(prep)},
		{"otelcol-oomwatch", 0o755, string(bin)},
	}, files(t, img))
}

func TestPush(t *testing.T) {
	t.Parallel()
	in := testInputs(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/oomwatch/otelcol-oomwatch:test"

	out, err := runImage(t, "push", "-binary", in.binary, "-statedir", in.statedir, "-ca-certs", in.caCerts, "-tag", ref)
	require.NoError(t, err)
	assert.Contains(t, out, "pushed "+ref+"@")
	pushed := printedDigest(t, out)

	// The registry holds the very image that build writes from the same inputs: the image
	// depends on its inputs only.
	built, err := runImage(t, "build", "-binary", in.binary, "-statedir", in.statedir, "-ca-certs", in.caCerts, "-o", filepath.Join(t.TempDir(), "image.tar"))
	require.NoError(t, err)
	assert.Equal(t, printedDigest(t, built), pushed)

	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	img, err := remote.Image(tag)
	require.NoError(t, err)
	d, err := img.Digest()
	require.NoError(t, err)
	assert.Equal(t, pushed, d.String())
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "65532:65532", cf.Config.User)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	in := testInputs(t)
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	require.NoError(t, os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o600))
	missing := filepath.Join(dir, "missing")
	out := filepath.Join(dir, "image.tar")

	cases := map[string]struct {
		args  []string
		err   string
		usage bool
	}{
		"no command":      {nil, "no command given", true},
		"unknown command": {[]string{"load"}, `unknown command "load"`, true},
		"unknown flag":    {[]string{"build", "-platform", "arm64"}, "flag provided but not defined: -platform", true},
		"extra argument":  {[]string{"build", "image.tar"}, `unexpected arguments ["image.tar"]`, true},
		"push needs tag":  {[]string{"push", "-binary", in.binary}, "image push needs -tag", true},
		"short reference": {
			[]string{"push", "-tag", "oomwatch/otelcol-oomwatch:dev"},
			`image reference "oomwatch/otelcol-oomwatch:dev" must name registry, repository and tag`, false,
		},
		"missing binary": {
			[]string{"build", "-binary", missing, "-ca-certs", in.caCerts, "-o", out},
			"reading the collector binary (make collector builds it): open " + missing + ": no such file or directory", false,
		},
		"not an executable": {
			[]string{"build", "-binary", notELF, "-ca-certs", in.caCerts, "-o", out},
			"binary " + notELF + " is not an ELF executable", false,
		},
		"missing statedir binary": {
			[]string{"build", "-binary", in.binary, "-statedir", missing, "-ca-certs", in.caCerts, "-o", out},
			"reading the oomwatch-statedir binary (make image builds it): open " + missing, false,
		},
		"missing CA certificates": {
			[]string{"build", "-binary", in.binary, "-statedir", in.statedir, "-ca-certs", missing, "-o", out},
			"reading the CA certificates (Debian's ca-certificates package installs them; -ca-certs names another bundle): open " + missing, false,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := runImage(t, c.args...)
			require.ErrorContains(t, err, c.err)
			assert.Equal(t, c.usage, strings.Contains(err.Error(), "usage:"), err.Error())
			_, err = os.Stat(out)
			assert.True(t, os.IsNotExist(err), "no tarball is written when an input fails")
		})
	}
}
