// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/seam"
)

// The scraper as the tests that join this receiver with other components drive it, from their
// own module, through internal/seam. A collector never calls it.

func init() {
	seam.NewScraper = func(set receiver.Settings, cfg component.Config, d seam.Deps) (seam.Scraper, error) {
		s, err := newScraper(set, cfg.(*Config), seamDeps(d))
		if err != nil {
			return nil, err
		}
		return seamScraper{s}, nil
	}
}

func seamDeps(d seam.Deps) deps {
	return deps{
		client:    func(*Config) (kubernetes.Interface, *rest.Config, error) { return d.Client, d.RestConfig, nil },
		tokenFile: d.TokenFile,
		now:       d.Now,
		handlers:  d.Handlers,
	}
}

// seamScraper is a containerScraper with the methods of seam.Scraper.
type seamScraper struct{ s *containerScraper }

func (x seamScraper) OnAdd(obj any, isInInitialList bool) { x.s.onAdd(obj, isInInitialList) }
func (x seamScraper) OnUpdate(oldObj, newObj any)         { x.s.onUpdate(oldObj, newObj) }
func (x seamScraper) OnDelete(obj any)                    { x.s.onDelete(obj) }

func (x seamScraper) Start(ctx context.Context, host component.Host) error {
	return x.s.start(ctx, host)
}

func (x seamScraper) OpenStorage(ctx context.Context, host component.Host) error {
	return x.s.openStorage(ctx, host)
}

func (x seamScraper) Scrape(ctx context.Context) (pmetric.Metrics, error) { return x.s.scrape(ctx) }
func (x seamScraper) Shutdown(ctx context.Context) error                  { return x.s.shutdown(ctx) }
func (x seamScraper) SetLogs(next consumer.Logs)                          { x.s.logs = next }
