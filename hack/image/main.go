// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Command image builds the collector's container image from the collector binary (make collector)
// and the host's CA certificates. The same inputs give the same image digest.
//
//	image build [-binary FILE] [-ca-certs FILE] [-tag REF] [-o FILE]
//	    write the image as a tarball that docker load and ctr images import read
//	image push -tag REF [-binary FILE] [-ca-certs FILE]
//	    push the image to the registry REF names, with the credentials of docker login
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/oomwatch/oomwatch/internal/packaging/containerimage"
)

const usage = `usage:
  image build [-binary FILE] [-ca-certs FILE] [-tag REF] [-o FILE]
  image push -tag REF [-binary FILE] [-ca-certs FILE]`

// errUsage marks errors of the command line, which exit with status 2.
var errUsage = errors.New(usage)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no command given: %w", errUsage)
	}
	cmd := args[0]
	fs := flag.NewFlagSet("image "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	binary := fs.String("binary", "_build/otelcol-oomwatch/otelcol-oomwatch", "the static linux/amd64 collector binary")
	statedir := fs.String("statedir", "_build/image/oomwatch-statedir", "the static linux/amd64 oomwatch-statedir binary")
	caCerts := fs.String("ca-certs", "/etc/ssl/certs/ca-certificates.crt", "the PEM bundle of CA certificates the collector trusts")
	var tag, out *string
	switch cmd {
	case "build":
		tag = fs.String("tag", "docker.io/oomwatch/otelcol-oomwatch:dev", "the reference docker load and ctr images import name the image by")
		out = fs.String("o", "_build/image/otelcol-oomwatch.tar", "the tarball to write")
	case "push":
		tag = fs.String("tag", "", "the reference to push to, as in ghcr.io/me/otelcol-oomwatch:v1 (required)")
	default:
		return fmt.Errorf("unknown command %q: %w", cmd, errUsage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: %w", fs.Args(), errUsage)
	}
	if *tag == "" {
		return fmt.Errorf("image %s needs -tag: %w", cmd, errUsage)
	}
	// A bad reference is reported before seconds of compression, not after.
	if _, err := containerimage.ParseReference(*tag); err != nil {
		return err
	}

	began := time.Now()
	img, err := collectorImage(*binary, *statedir, *caCerts)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if cmd == "push" {
		pushed, err := containerimage.Push(ctx, *tag, img)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "pushed %s@%s in %s\n", *tag, pushed, since(began))
		return err
	}
	if err := containerimage.WriteTarball(*out, *tag, img); err != nil {
		return err
	}
	return report(stdout, *out, *tag, digest, began)
}

func report(w io.Writer, path, tag string, digest v1.Hash, began time.Time) error {
	fi, err := os.Stat(path) //nolint:gosec // G703: named on the command line
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "wrote %s (%.1f MB) in %s: %s@%s\n", path, float64(fi.Size())/1e6, since(began), tag, digest)
	return err
}

func since(t time.Time) time.Duration {
	return time.Since(t).Round(10 * time.Millisecond)
}
