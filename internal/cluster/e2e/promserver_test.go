// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/internal/testing/promserver"
)

// promScrapeInterval is how often the test's Prometheus scrapes its targets.
const promScrapeInterval = time.Second

// startPrometheus starts a Prometheus (Debian's package) that scrapes targets (host:port) every
// promScrapeInterval; it is stopped when the test ends.
func startPrometheus(t *testing.T, targets ...string) *promserver.Server {
	t.Helper()
	return startPrometheusWith(t, promOptions{targets: targets})
}

// promOptions say what a test's Prometheus does besides scraping its targets.
type promOptions struct {
	targets []string
	// rules are alert and recording rule files, evaluated every promScrapeInterval.
	rules []string
	// remoteWrite accepts samples pushed to /api/v1/write, as a remote-write backend does.
	remoteWrite bool
	// otlp runs Prometheus 3 instead, which takes OTLP metrics at /api/v1/otlp/v1/metrics as
	// deploy/prometheus/otlp.yaml says: its otlp: settings and its flags.
	otlp bool
}

// otlpFlags are the flags deploy/prometheus/otlp.yaml tells users to start Prometheus with: a
// comment line each.
var otlpFlags = regexp.MustCompile(`(?m)^#\s+(--[a-z.-]+(?:=[a-z-]+)?)$`)

func startPrometheusWith(t *testing.T, o promOptions) *promserver.Server {
	t.Helper()
	po := promserver.Options{Targets: o.targets, Rules: o.rules, Interval: promScrapeInterval, RemoteWrite: o.remoteWrite}
	if o.otlp {
		po.Bin = need(t).cluster.Bin("prometheus3")
		root, err := filepath.Abs(filepath.Join("..", "..", ".."))
		require.NoError(t, err)
		otlp, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "otlp.yaml"))
		require.NoError(t, err)
		po.Config = string(otlp)
		for _, f := range otlpFlags.FindAllStringSubmatch(po.Config, -1) {
			po.Flags = append(po.Flags, f[1])
		}
		require.NotEmpty(t, po.Flags, "deploy/prometheus/otlp.yaml names Prometheus's flags")
	}
	return promserver.Start(t, po)
}
