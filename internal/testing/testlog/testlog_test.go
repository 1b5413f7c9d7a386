// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package testlog

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPrefixed(t *testing.T) {
	var b strings.Builder
	w := prefixWriter{prefix: "node: ", w: &b}
	n, err := w.Write([]byte("one\ntwo\n"))
	assert.NoError(t, err)
	assert.Equal(t, 8, n)
	_, _ = w.Write([]byte("three"))
	assert.Equal(t, "node: one\nnode: two\nnode: three", b.String())
}
