// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test binary is the program when this is set: the tests run it as the init container runs,
// with no capability but CAP_CHOWN.
const asMain = "OOMWATCH_STATEDIR_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Args = append([]string{os.Args[0]}, os.Args[2:]...) // drop the "--" that ends setpriv's options
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseOwner(t *testing.T) {
	t.Parallel()
	uid, gid, err := parseOwner("65532:65533")
	require.NoError(t, err)
	assert.Equal(t, [2]int{65532, 65533}, [2]int{uid, gid})
	for _, bad := range []string{"", "65532", "a:1", "1:b", "-1:1", "1:"} {
		_, _, err := parseOwner(bad)
		assert.EqualError(t, err, `--owner must be uid:gid (got "`+bad+`")`, bad)
	}
}

// run runs the program as root with the capabilities caps ("+chown", or "" for none) and
// returns its output and error.
func run(t *testing.T, caps string, args ...string) (string, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the init container runs as root: run the tests as root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is missing")
	}
	cmd := exec.Command(setpriv, append([]string{
		"--inh-caps=-all" + caps, "--ambient-caps=-all" + caps, "--bounding-set=-all" + caps,
		"--", os.Args[0], "--",
	}, args...)...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type owned struct {
	uid, gid uint32
	mode     os.FileMode
}

func stat(t *testing.T, path string) (owned, syscall.Timespec) {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	return owned{st.Uid, st.Gid, fi.Mode().Perm()}, st.Ctim
}

// TestHandsTheDirectoryOverWithCapChownOnly: what the kubelet creates, a directory left with
// another mode, and one already right, each with CAP_CHOWN alone; the contents are not touched.
func TestHandsTheDirectoryOverWithCapChownOnly(t *testing.T) {
	t.Parallel()
	want := owned{65532, 65532, 0o700}
	for name, from := range map[string]owned{
		"created by the kubelet": {0, 0, 0o755},
		"mode changed":           {65532, 65532, 0o755},
		"another owner":          {1000, 1000, 0o750},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state")
			require.NoError(t, os.Mkdir(dir, 0o700))
			inside := filepath.Join(dir, "receiver_k8s_container")
			require.NoError(t, os.WriteFile(inside, nil, 0o600))
			require.NoError(t, os.Chown(inside, 4242, 4242))
			require.NoError(t, os.Chmod(dir, from.mode))
			require.NoError(t, os.Chown(dir, int(from.uid), int(from.gid)))

			out, err := run(t, ",+chown", "--dir="+dir, "--owner=65532:65532")
			require.NoError(t, err, out)
			got, changed := stat(t, dir)
			assert.Equal(t, want, got)
			in, _ := stat(t, inside)
			assert.Equal(t, owned{4242, 4242, 0o600}, in, "the contents are the collector's")

			// Again, as at every start of the pod: nothing to do, nothing done.
			out, err = run(t, ",+chown", "--dir="+dir, "--owner=65532:65532")
			require.NoError(t, err, out)
			again, unchanged := stat(t, dir)
			assert.Equal(t, want, again)
			assert.Equal(t, changed, unchanged, "a directory that is right is not touched")
		})
	}
}

func TestNeedsCapChown(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.Mkdir(dir, 0o755))
	out, err := run(t, "", "--dir="+dir, "--owner=65532:65532")
	require.Error(t, err)
	assert.Contains(t, out, "operation not permitted")
}

func TestRefusesWhatIsNotADirectory(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	link := filepath.Join(base, "link")
	require.NoError(t, os.Symlink(base, link))
	for _, path := range []string{file, link} {
		out, err := run(t, ",+chown", "--dir="+path, "--owner=65532:65532")
		require.Error(t, err, path)
		assert.Contains(t, out, "is not a directory", path)
	}
	out, err := run(t, ",+chown", "--owner=65532:65532")
	require.Error(t, err)
	assert.Contains(t, out, "--dir is required")
}
