// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/oomwatch/oomwatch/internal/packaging/containerimage"
)

// Where things are in the image. The deployment mounts the config file at configPath; a user who
// wants the collector started otherwise sets the container's command.
const (
	binaryPath   = "/otelcol-oomwatch"
	statedirPath = "/oomwatch-statedir"
	caPath       = "/etc/ssl/certs/ca-certificates.crt"
	configPath   = "/etc/otelcol-oomwatch/config.yaml"
)

// The collector runs as the project's one unprivileged user, named as in distroless images. Every
// file belongs to root and is world-readable, so the user can read all and change nothing.
const (
	user   = "65532:65532"
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n" //nolint:gosec // accounts without passwords
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// collectorImage is the collector's image: the collector, the program that prepares the agent's
// state directory (the DaemonSet's init container), the CA bundle and the user, nothing else. It
// depends only on the three files' contents.
func collectorImage(binary, statedir, caCerts string) (v1.Image, error) {
	bin, err := readStatic(binary, "the collector binary (make collector builds it)")
	if err != nil {
		return nil, err
	}
	prep, err := readStatic(statedir, "the oomwatch-statedir binary (make image builds it)")
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caCerts) //nolint:gosec // G703: named on the command line
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificates (Debian's ca-certificates package installs them; -ca-certs names another bundle): %w", err)
	}
	return containerimage.Build([]containerimage.File{
		{Path: binaryPath, Mode: 0o755, Data: bin},
		{Path: statedirPath, Mode: 0o755, Data: prep},
		{Path: caPath, Mode: 0o644, Data: ca},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Path: "/etc/group", Mode: 0o644, Data: []byte(group)},
	}, containerimage.Config{
		Entrypoint: []string{binaryPath, "--config=" + configPath},
		User:       user,
		Env:        []string{"SSL_CERT_FILE=" + caPath},
	})
}

func readStatic(name, what string) ([]byte, error) {
	bin, err := os.ReadFile(name) //nolint:gosec // G703: named on the command line
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if err := checkStatic(name, bin); err != nil {
		return nil, err
	}
	return bin, nil
}

// checkStatic refuses what cannot start in an image without libc or dynamic loader: the runtime
// would report only "no such file or directory".
func checkStatic(name string, bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("binary %s is not an ELF executable: %w", name, err)
	}
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("binary %s is built for %s, the image for linux/amd64", name, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("binary %s is linked dynamically, and the image has no libc: build it with CGO_ENABLED=0", name)
		}
	}
	return nil
}
