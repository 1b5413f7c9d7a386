// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import "time"

// What the scraper's tests, in package scraper_test, read of its state.

// Endpoint is the kubelet address s uses: configured, or read from the Node object.
func Endpoint(s *Scraper) string { return s.endpoint }

// SetKernelBoot sets when the kernel whose log s reads booted, for a test's log.
func SetKernelBoot(s *Scraper, boot time.Time) { s.kernel.boot = boot }
