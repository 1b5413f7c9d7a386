// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package v2vm

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cavaliergopher/cpio"
)

// TestInitramfs reads back the archive writeInitramfs writes: the layout the kernel unpacks
// (newc headers, 4-byte alignment, the trailer) and the /init that loads the modules in order
// and runs the program with its arguments quoted.
func TestInitramfs(t *testing.T) {
	if err := checkStatic(Busybox); err != nil {
		t.Skipf("no static busybox: %v", err)
	}
	kernel := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(kernel, modulesDir), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(kernel, modulesLoad), []byte("b.ko\na.ko\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(kernel, modulesDir, "a.ko"), []byte("module a"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(kernel, modulesDir, "b.ko"), []byte("module b, odd length"), 0o600))
	path := filepath.Join(t.TempDir(), "initrd.gz")
	require.NoError(t, writeInitramfs(path, kernel, "/tmp/x/prog", []string{"-v", "it's", ""}))

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	archive, err := io.ReadAll(gz)
	require.NoError(t, err)

	files := map[string][]byte{}
	modes := map[string]uint64{}
	var names []string
	for off := 0; ; {
		require.GreaterOrEqual(t, len(archive)-off, 110, "a header at %d", off)
		hdr := archive[off : off+110]
		require.Equal(t, "070701", string(hdr[:6]))
		field := func(i int) int {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			require.NoError(t, err)
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(archive[off+110 : off+110+namesize-1])
		off = align4(off + 110 + namesize)
		if name == "TRAILER!!!" {
			break
		}
		names = append(names, name)
		files[name] = archive[off : off+size]
		modes[name] = uint64(mode)
		off = align4(off + size)
	}
	assert.Equal(t, []string{"bin", "dev", "proc", "sys", "tmp", "host", "lib", "lib/modules", "bin/busybox", "init", "lib/modules/b.ko", "lib/modules/a.ko"}, names)
	assert.Equal(t, uint64(cpio.TypeReg|0o755), modes["init"])
	assert.Equal(t, uint64(cpio.TypeDir|0o755), modes["lib/modules"])
	assert.Equal(t, "module b, odd length", string(files["lib/modules/b.ko"]))
	busybox, err := os.ReadFile(Busybox)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(busybox, files["bin/busybox"]), "busybox is copied whole")
	initScript := string(files["init"])
	assert.Contains(t, initScript, "for m in b.ko a.ko; do")
	assert.Contains(t, initScript, `'/host/tmp/x/prog' '-v' 'it'\''s' '' </dev/null 2>&1`)
}

func align4(n int) int { return (n + 3) &^ 3 }

// TestShellQuote checks the quoting against sh itself.
func TestShellQuote(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"", "plain", "it's", `"$HOME" \n *`, "''", "a\nb"} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(s)).Output()
		require.NoError(t, err)
		assert.Equal(t, s, string(out))
	}
}
