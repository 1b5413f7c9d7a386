// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	otelscraper "go.opentelemetry.io/collector/scraper"
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
)

// One receiver serves both signals of a configured k8s_container: the metrics and the logs
// pipelines that name it share one pod watch, one kubelet client and one scrape, so a kill is
// seen once and reported to both.

// newReceiver returns the metrics side of cfg's receiver.
func newReceiver(set receiver.Settings, cfg *Config, next consumer.Metrics, d scraper.Deps) (receiver.Metrics, error) {
	sr, err := receivers.get(set, cfg, d)
	if err != nil {
		return nil, err
	}
	sr.metrics = next
	return sr, nil
}

// newLogsReceiver returns the logs side of cfg's receiver: one record per OOM kill.
func newLogsReceiver(set receiver.Settings, cfg *Config, next consumer.Logs, d scraper.Deps) (receiver.Logs, error) {
	sr, err := receivers.get(set, cfg, d)
	if err != nil {
		return nil, err
	}
	sr.scraper.SetLogs(next)
	return sr, nil
}

// sharedReceivers holds the receiver of each configuration until it is shut down.
type sharedReceivers struct {
	mu sync.Mutex
	m  map[*Config]*sharedReceiver
}

var receivers = &sharedReceivers{m: map[*Config]*sharedReceiver{}}

// get returns the receiver of cfg, creating it on first use.
func (r *sharedReceivers) get(set receiver.Settings, cfg *Config, d scraper.Deps) (*sharedReceiver, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sr, ok := r.m[cfg]; ok {
		return sr, nil
	}
	s, err := scraper.New(set, cfg, d)
	if err != nil {
		return nil, err
	}
	sr := &sharedReceiver{set: set, cfg: cfg, scraper: s, owner: r}
	r.m[cfg] = sr
	return sr, nil
}

func (r *sharedReceivers) forget(cfg *Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, cfg)
}

// sharedReceiver is started by the first Start and shut down by the first Shutdown, whichever
// pipeline calls it.
type sharedReceiver struct {
	set     receiver.Settings
	cfg     *Config
	scraper *scraper.Scraper
	owner   *sharedReceivers

	metrics consumer.Metrics

	mu         sync.Mutex
	controller component.Component
	started    bool
	stopped    bool
}

var (
	_ receiver.Metrics = (*sharedReceiver)(nil)
	_ receiver.Logs    = (*sharedReceiver)(nil)
)

// Start starts the scrape controller once; a metrics pipeline gets the metrics, otherwise they
// are scraped only for what the logs need.
func (r *sharedReceiver) Start(ctx context.Context, host component.Host) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.stopped {
		return nil
	}
	next := r.metrics
	if next == nil {
		discard, err := consumer.NewMetrics(func(context.Context, pmetric.Metrics) error { return nil })
		if err != nil {
			return err
		}
		next = discard
	}
	sc, err := otelscraper.NewMetrics(r.scraper.Scrape, otelscraper.WithStart(r.scraper.Start), otelscraper.WithShutdown(r.scraper.Shutdown))
	if err != nil {
		return err
	}
	ctrl, err := scraperhelper.NewMetricsController(&r.cfg.ControllerConfig, r.set, next, scraperhelper.AddMetricsScraper(metadata.Type, sc))
	if err != nil {
		return err
	}
	if err := ctrl.Start(ctx, host); err != nil {
		// The controller may have started the scraper: shut it down so nothing leaks.
		_ = ctrl.Shutdown(ctx)
		return err
	}
	r.controller, r.started = ctrl, true
	return nil
}

// Shutdown stops everything once, started or not.
func (r *sharedReceiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil
	}
	r.stopped = true
	r.owner.forget(r.cfg)
	if r.controller != nil {
		return r.controller.Shutdown(ctx)
	}
	return r.scraper.Shutdown(ctx)
}
