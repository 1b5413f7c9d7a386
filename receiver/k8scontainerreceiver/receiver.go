// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/apiclient"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/cgroupoom"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/processkill"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/systemoom"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workingset"
)

// The receiver's construction and lifecycle: its connections to the outside, the scraper's
// state, start (the API client, the kubelet client, the watches), the storage of when it last
// looked, and shutdown.

// deps are the receiver's connections to the outside, replaced in tests.
type deps struct {
	// client connects to the API server; the rest config also carries the kubeConfig
	// credentials to the kubelet.
	client func(cfg *Config) (kubernetes.Interface, *rest.Config, error)
	// tokenFile is the service-account token presented to the kubelet.
	tokenFile string
	now       func() time.Time
	// handlers, when set, stands between each informer, named by its resource ("pods",
	// "events"), and the receiver's handler of its events: tests learn through it when an event
	// has been handled.
	handlers func(resource string, h cache.ResourceEventHandler) cache.ResourceEventHandler
}

func defaultDeps() deps {
	return deps{
		client: func(cfg *Config) (kubernetes.Interface, *rest.Config, error) {
			rc, err := apiclient.RestConfig(cfg.AuthType, cfg.Context)
			if err != nil {
				return nil, nil, err
			}
			cs, err := kubernetes.NewForConfig(rc)
			return cs, rc, err
		},
		tokenFile: kubelet.ServiceAccountToken,
		now:       time.Now,
	}
}

// handler is h, or what deps put in its place.
func (d deps) handler(resource string, h cache.ResourceEventHandler) cache.ResourceEventHandler {
	if d.handlers == nil {
		return h
	}
	return d.handlers(resource, h)
}

// newReceiver returns the metrics side of cfg's receiver.
func newReceiver(set receiver.Settings, cfg *Config, next consumer.Metrics, d deps) (receiver.Metrics, error) {
	sr, err := receivers.get(set, cfg, d)
	if err != nil {
		return nil, err
	}
	sr.metrics = next
	return sr, nil
}

// newLogsReceiver returns the logs side of cfg's receiver: one record per OOM kill.
func newLogsReceiver(set receiver.Settings, cfg *Config, next consumer.Logs, d deps) (receiver.Logs, error) {
	sr, err := receivers.get(set, cfg, d)
	if err != nil {
		return nil, err
	}
	sr.scraper.logs = next
	return sr, nil
}

// attributeName maps a pod label or annotation to its resource attribute.
type attributeName struct{ key, attribute string }

type containerScraper struct {
	cfg    *Config
	deps   deps
	logger *zap.Logger
	mb     *metadata.MetricsBuilder
	lb     *metadata.LogsBuilder
	// logs receives the OOM kill records; nil without a logs pipeline.
	logs      consumer.Logs
	telemetry *metadata.TelemetryBuilder
	tracker   *containerstate.Tracker

	labels      []attributeName
	annotations []attributeName

	client  kubernetes.Interface
	kubelet *kubelet.Client
	factory informers.SharedInformerFactory
	stopCh  chan struct{}
	// systemOOMs counts the SystemOOM events that eventFactory watches; nil when neither the
	// metric nor the record is enabled.
	systemOOMs   *systemoom.Tracker
	eventFactory informers.SharedInformerFactory

	// endpoint is the kubelet address, from the config or resolved from the Node object.
	endpoint string
	// kubeletProblem is the last Summary error, logged only when it changes.
	kubeletProblem string
	stats          map[statsKey]*stats.ContainerStats
	// workingSets are the latest working sets read, for the kill records; scrapes numbers them.
	workingSets *workingset.Tracker[statsKey]
	scrapes     uint64
	// lastScrape is when the previous scrape looked: the start of this scrape's delta points.
	lastScrape pcommon.Timestamp

	// processKills are the process OOM kill counters as last read, and this scrape's kills.
	processKills *processkill.Tracker
	// cgroups reads the process OOM kill counters with process_oom_kills.source cgroup.
	cgroups         *cgroupoom.Reader
	cgroupInstances []cgroupoom.Instance
	cgroupProblem   string
	// flagPoints is the buffer of one container's oom_killed point details.
	flagPoints []metadata.FlagPoint

	// started is when the receiver started: the start of the first delta points.
	started        pcommon.Timestamp
	id             component.ID
	storage        storage.Client
	storageFailing bool

	shutdownOnce sync.Once
}

func newScraper(set receiver.Settings, cfg *Config, d deps) (*containerScraper, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	s := &containerScraper{
		cfg:        cfg,
		id:         set.ID,
		deps:       d,
		logger:     set.Logger,
		mb:         metadata.NewMetricsBuilder(cfg.MetricsBuilderConfig, set),
		lb:         metadata.NewLogsBuilder(metadata.LogsBuilderConfig{Events: cfg.Events, ResourceAttributes: cfg.ResourceAttributes}, set),
		telemetry:  tb,
		tracker:    containerstate.New(cfg.MaxPendingTerminations),
		systemOOMs: systemoom.New(cfg.Node),
		stats:      map[statsKey]*stats.ContainerStats{},

		workingSets:  workingset.New[statsKey](),
		processKills: processkill.New(),
	}
	for _, f := range cfg.Extract.Labels {
		s.labels = append(s.labels, attributeName{f.Key, f.attribute("k8s.pod.label.")})
	}
	for _, f := range cfg.Extract.Annotations {
		s.annotations = append(s.annotations, attributeName{f.Key, f.attribute("k8s.pod.annotation.")})
	}
	return s, nil
}

// horizonKey holds, in the storage client, the horizon: when the receiver last handed a scrape
// on, as 8 bytes of Unix nanoseconds, then, as JSON, the terminations it knew that ended in that
// second. Its value is the name earlier versions stored the horizon under.
const horizonKey = "last_looked"

func (s *containerScraper) start(ctx context.Context, host component.Host) error {
	s.started = pcommon.NewTimestampFromTime(s.deps.now())
	if err := s.openStorage(ctx, host); err != nil {
		return err
	}
	client, rc, err := s.deps.client(s.cfg)
	if err != nil {
		return fmt.Errorf("connecting to the Kubernetes API server: %w", err)
	}
	s.client = client
	if s.cfg.Kubelet.Enabled {
		if s.kubelet, err = newKubeletClient(s.cfg, s.deps.tokenFile, rc); err != nil {
			return err
		}
		s.endpoint = s.cfg.Kubelet.Endpoint
	}
	if s.cfg.ProcessOOMKills.Source == ProcessSourceCgroup {
		if s.cgroups, err = cgroupoom.NewReader(s.cfg.ProcessOOMKills.CgroupRoot); err != nil {
			return fmt.Errorf("process_oom_kills.cgroup_root: %w", err)
		}
	}

	if err := s.startPodWatch(); err != nil {
		return err
	}
	if s.cfg.Metrics.K8sNodeSystemOomKilled.Enabled || s.cfg.Events.K8sNodeSystemOomKill.Enabled {
		return s.startSystemOOMWatch()
	}
	s.systemOOMs = nil
	return nil
}

// openStorage connects to the configured storage extension and reads the horizon of an earlier
// run of the receiver.
func (s *containerScraper) openStorage(ctx context.Context, host component.Host) error {
	if s.cfg.Storage == nil {
		return nil
	}
	ext, ok := host.GetExtensions()[*s.cfg.Storage]
	if !ok {
		return fmt.Errorf("storage: extension %q not found", *s.cfg.Storage)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return fmt.Errorf("storage: extension %q is not a storage extension", *s.cfg.Storage)
	}
	client, err := se.GetClient(ctx, component.KindReceiver, s.id, "")
	if err != nil {
		return fmt.Errorf("storage: extension %q: %w", *s.cfg.Storage, err)
	}
	s.storage = client
	s.restoreProcessCounters(ctx)
	b, err := client.Get(ctx, horizonKey)
	switch {
	case err != nil:
		s.logger.Warn("Reading when the receiver last looked failed; kills while it was down are taken as history", zap.Error(err))
	case len(b) >= 8:
		horizon := time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
		var ended []termination.Key
		if len(b) > 8 {
			ended = []termination.Key{}
			if err := json.Unmarshal(b[8:], &ended); err != nil {
				s.logger.Warn("Discarding a damaged record of the terminations seen when the receiver last looked", zap.Error(err))
				ended = nil
			}
		}
		s.tracker.SetHorizon(horizon, ended)
		s.restoreSystemOOMCounts(ctx, horizon)
	case b != nil:
		s.logger.Warn("Discarding a damaged record of when the receiver last looked", zap.Int("bytes", len(b)))
	default:
		// The first run with this storage: from now on, whatever ends is news to a later run,
		// even if this one never hands a scrape on.
		// Nothing is known yet of what ended in this second: no terminations.
		s.saveHorizon(ctx, s.deps.now(), nil)
	}
	return nil
}

// saveHorizon records that whatever ended before at has been reported, or is in the scrape about
// to be handed on; ended are the terminations known to have ended in at's second.
func (s *containerScraper) saveHorizon(ctx context.Context, at time.Time, ended []termination.Key) {
	if s.storage == nil || at.IsZero() {
		return
	}
	record := binary.LittleEndian.AppendUint64(nil, uint64(at.UnixNano()))
	if ended != nil {
		keys, err := json.Marshal(ended)
		if err != nil {
			return // a Key always marshals
		}
		record = append(record, keys...)
	}
	err := s.storage.Set(ctx, horizonKey, record)
	if (err != nil) != s.storageFailing {
		s.storageFailing = err != nil
		if err != nil {
			s.logger.Warn("Recording when the receiver last looked failed; it is retried at every scrape", zap.Error(err))
		} else {
			s.logger.Info("Recording when the receiver last looked works again")
		}
	}
}

func (s *containerScraper) shutdown(ctx context.Context) error {
	var err error
	s.shutdownOnce.Do(func() {
		defer s.telemetry.Shutdown()
		if s.storage != nil {
			defer func() { err = errors.Join(err, s.storage.Close(ctx)) }()
		}
		s.kubelet.Close()
		if s.factory == nil {
			return
		}
		close(s.stopCh)
		done := make(chan struct{})
		go func() {
			s.factory.Shutdown()
			if s.eventFactory != nil {
				s.eventFactory.Shutdown()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("waiting for the pod informer to stop: %w", ctx.Err())
		}
	})
	return err
}
