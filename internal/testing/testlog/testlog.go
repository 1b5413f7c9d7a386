// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package testlog gives the local cluster's tests writers for the logs of what they start.
package testlog

import (
	"io"
	"os"
	"strings"
	"testing"
)

// T writes each write to t's log, its trailing newline dropped.
func T(t testing.TB) io.Writer { return tWriter{t} }

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Prefixed writes each line to stderr behind prefix: logs of what lives longer than one test.
func Prefixed(prefix string) io.Writer { return prefixWriter{prefix: prefix, w: os.Stderr} }

type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			_, _ = io.WriteString(p.w, p.prefix+line)
		}
	}
	return len(b), nil
}
