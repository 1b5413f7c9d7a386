// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package oomcounterprocessor turns 0/1 termination flags and delta sums into exact,
// bounded, restart-proof cumulative counters, such as k8s.container.oom_kills.
//
//go:generate go tool -modfile=../../tools/go.mod mdatagen metadata.yaml
package oomcounterprocessor
