// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package testworkload

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/oomwatch/oomwatch/internal/packaging/containerimage"
)

// Image references the local cluster knows the test images by. Pods that use them set
// imagePullPolicy: Never, since no registry is reachable.
const (
	PauseImage    = "docker.io/oomwatch/pause:dev"
	WorkloadImage = "docker.io/oomwatch/workload:dev"
)

const modulePath = "github.com/oomwatch/oomwatch"

// ImageArchive is an image written to disk, ready for `ctr images import`.
type ImageArchive struct {
	Name string
	Path string
}

// BuildImages compiles pause and workload as static linux/amd64 binaries from the module at
// moduleDir and writes one single-file image archive for each into outDir.
func BuildImages(ctx context.Context, moduleDir, outDir string) ([]ImageArchive, error) {
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return nil, err
	}
	images := []struct{ name, pkg, bin string }{
		{PauseImage, "internal/cluster/testworkload/pause", "/pause"},
		{WorkloadImage, "internal/cluster/testworkload/workload", "/workload"},
	}
	var out []ImageArchive
	for _, img := range images {
		binPath := filepath.Join(outDir, filepath.Base(img.pkg))
		cmd := exec.CommandContext(ctx, "go", "build", //nolint:gosec // builds this module's own packages
			"-trimpath", "-ldflags=-s -w", "-o", binPath, modulePath+"/"+img.pkg)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", img.pkg, err, b)
		}
		data, err := os.ReadFile(binPath)
		if err != nil {
			return nil, err
		}
		image, err := containerimage.Build(
			[]containerimage.File{{Path: img.bin, Mode: 0o755, Data: data}},
			containerimage.Config{Entrypoint: []string{img.bin}},
		)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.name, err)
		}
		archive := binPath + ".tar"
		if err := containerimage.WriteTarball(archive, img.name, image); err != nil {
			return nil, err
		}
		out = append(out, ImageArchive{Name: img.name, Path: archive})
	}
	return out, nil
}
