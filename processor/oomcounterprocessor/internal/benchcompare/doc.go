// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package benchcompare runs the oom_counter processor and contrib's delta_to_cumulative processor
// on the same delta-sum workload, in the same benchmark run. It is a module of its own so the
// main module does not depend on contrib.
package benchcompare
