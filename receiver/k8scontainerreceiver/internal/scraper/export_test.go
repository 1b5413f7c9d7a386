// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

// What the scraper's tests, in package scraper_test, read of its state.

// Endpoint is the kubelet address s uses: configured, or read from the Node object.
func Endpoint(s *Scraper) string { return s.endpoint }
