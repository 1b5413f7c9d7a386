// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package seam exists for the tests that join this receiver with other components: they live in
// a module of their own (internal/pipelinetest), so that the receiver's module does not depend
// on those components, and drive the receiver's scraper, which the receiver keeps unexported,
// through this package. The receiver fills NewScraper in when it is initialised; nothing in a
// collector calls it.
package seam

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Deps are the scraper's connections to the outside, as a test gives them.
type Deps struct {
	// Client is the API server; RestConfig carries the kubeConfig credentials to the kubelet.
	Client     kubernetes.Interface
	RestConfig *rest.Config
	// TokenFile is the service-account token the scraper presents to the kubelet.
	TokenFile string
	Now       func() time.Time
	// Handlers, when set, stands between each informer, named by its resource ("pods",
	// "events"), and the scraper's handler of its events.
	Handlers func(resource string, h cache.ResourceEventHandler) cache.ResourceEventHandler
}

// Scraper is the receiver's scraper: what the scraper controller and the informers call.
type Scraper interface {
	// ResourceEventHandler handles the pod informer's events. A test may deliver them itself,
	// after OpenStorage, instead of starting the scraper.
	cache.ResourceEventHandler
	Start(ctx context.Context, host component.Host) error
	// OpenStorage does what Start does with the storage extension, and nothing else.
	OpenStorage(ctx context.Context, host component.Host) error
	Scrape(ctx context.Context) (pmetric.Metrics, error)
	Shutdown(ctx context.Context) error
	// SetLogs gives the scraper the logs pipeline a logs receiver would; before Start.
	SetLogs(next consumer.Logs)
}

// NewScraper returns the scraper of cfg, a *k8scontainerreceiver.Config.
var NewScraper func(set receiver.Settings, cfg component.Config, d Deps) (Scraper, error)
