// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStoryCountsEveryOOMOnce(t *testing.T) {
	var out bytes.Buffer
	final, err := run(&out)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"leaky": 4, "crashy": 0, "steady": 0}, final)
	assert.Contains(t, out.String(), "sent twice")
}
