// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kubelet

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// fileToken is a bearer token read from a file and read again when the file changes: bound
// service-account tokens are rotated by the kubelet, which swaps the file atomically.
type fileToken struct {
	path string

	mu    sync.Mutex
	info  os.FileInfo
	token string
}

func (f *fileToken) get() (string, error) {
	info, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("kubelet token: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.info != nil && os.SameFile(f.info, info) && f.info.ModTime().Equal(info.ModTime()) && f.info.Size() == info.Size() {
		return f.token, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("kubelet token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("kubelet token: %s is empty", f.path)
	}
	f.info, f.token = info, tok
	return tok, nil
}
