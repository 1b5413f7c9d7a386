// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package scraper is the k8s_container receiver's scraper: it watches the pods (and the
// SystemOOM events) of its node, reads the kubelet, and turns what it saw since the previous
// scrape into the receiver's metrics and OOM kill records.
package scraper

import (
	"context"
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
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podevents"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/processkill"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/systemoom"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workingset"
)

// The scraper's construction and lifecycle: its connections to the outside, its state, start
// (the API client, the kubelet client, the watches) and shutdown.

// Deps are the scraper's connections to the outside, which tests replace.
type Deps struct {
	// Connect connects to the API server; the rest config also carries the kubeConfig
	// credentials to the kubelet. Start calls it.
	Connect func(cfg *Config) (kubernetes.Interface, *rest.Config, error)
	// TokenFile is the service-account token presented to the kubelet.
	TokenFile string
	Now       func() time.Time
	// Handlers, when set, stands between each informer, named by its resource ("pods",
	// "events"), and the scraper's handler of its events: tests learn through it when an event
	// has been handled.
	Handlers func(resource string, h cache.ResourceEventHandler) cache.ResourceEventHandler
}

// DefaultDeps are the connections of a collector: the API server of cfg's auth_type, the
// service-account token, the system clock.
func DefaultDeps() Deps {
	return Deps{
		Connect: func(cfg *Config) (kubernetes.Interface, *rest.Config, error) {
			rc, err := apiclient.RestConfig(cfg.AuthType, cfg.Context)
			if err != nil {
				return nil, nil, err
			}
			cs, err := kubernetes.NewForConfig(rc)
			return cs, rc, err
		},
		TokenFile: kubelet.ServiceAccountToken,
		Now:       time.Now,
	}
}

// handler is h, or what d puts in its place.
func (d Deps) handler(resource string, h cache.ResourceEventHandler) cache.ResourceEventHandler {
	if d.Handlers == nil {
		return h
	}
	return d.Handlers(resource, h)
}

// attributeName maps a pod label or annotation to its resource attribute.
type attributeName struct{ key, attribute string }

// Scraper is the scraper of one configured receiver. The scraper controller calls Start, Scrape
// and Shutdown; the pod informer calls its ResourceEventHandler methods.
type Scraper struct {
	cfg    *Config
	deps   Deps
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
	// podsListed tells that the pod informer's initial list reached the tracker; nil when the
	// scraper runs without one (a test delivering pods itself), as if it had.
	podsListed func() bool
	// systemOOMs counts the SystemOOM events that eventFactory watches; nil when neither the
	// metric nor the record is enabled.
	systemOOMs   *systemoom.Tracker
	eventFactory informers.SharedInformerFactory
	// systemKills are the system OOM kills a scrape took from systemOOMs, to report after its
	// containers.
	systemKills []nodeKills

	// endpoint is the kubelet address, from the config or resolved from the Node object.
	endpoint string
	// kubeletProblem is the last Summary error, logged only when it changes.
	kubeletProblem string
	stats          map[statsKey]*stats.ContainerStats
	// workingSets are the latest working sets read, for the kill records.
	workingSets *workingset.Tracker[statsKey]
	// trajectories are the working sets of the last minutes, for the kill records.
	trajectories *trajectory.Tracker[statsKey]
	// scrapes numbers the scrapes: workingSets and processKills forget what is not read again
	// for a few.
	scrapes uint64
	// lastScrape is when the last scrape that handed its kills on looked: the start of the next
	// delta points.
	lastScrape pcommon.Timestamp

	// processKills are the process OOM kill counters as last read, and the kills not yet handed
	// on; processCountersChanged tells that the counters changed since they were last saved.
	processKills           *processkill.Tracker
	processCountersChanged bool
	// livePods is what the pod list showed at the latest reading of the counters.
	livePods livePods
	// cgroups reads the process OOM kill counters with process_oom_kills.source cgroup.
	cgroups         *cgroupoom.Reader
	cgroupInstances []cgroupoom.Instance
	cgroupProblem   string
	// limitHitCounts are the limit hits of each running instance read by this scrape, by
	// container ID.
	limitHitCounts map[string]uint64
	// stallTimes are the memory stall totals of each running instance read by this scrape
	// (cgroup v2), by container ID.
	stallTimes map[string]stallTime
	// limits are the readings of the limit hits above the containers, for k8s.oom.scope.
	limits limits
	// podEvents writes an Event on the pod of each kill, with pod_events; else nil.
	podEvents *podevents.Writer
	// kernel holds the kernel's recent OOM-kill reports, with kernel_log; else nil.
	kernel *kernelLog
	// suggested are the limits the containers' kills argue for.
	suggested map[statsKey]suggestion
	// flagPoints is the buffer of one container's oom_killed point details.
	flagPoints []metadata.FlagPoint

	// started is when the receiver started: the start of the first delta points.
	started        pcommon.Timestamp
	id             component.ID
	storage        storage.Client
	storageFailing bool

	shutdownOnce sync.Once
}

// New returns the scraper of cfg, which it keeps; nothing runs before Start.
func New(set receiver.Settings, cfg *Config, d Deps) (*Scraper, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	s := &Scraper{
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
		trajectories: trajectory.New[statsKey](trajectory.Options{}),
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

// Start opens the storage, connects to the API server and the kubelet, and starts the watches.
func (s *Scraper) Start(ctx context.Context, host component.Host) error {
	s.started = pcommon.NewTimestampFromTime(s.deps.Now())
	if err := s.OpenStorage(ctx, host); err != nil {
		return err
	}
	client, rc, err := s.deps.Connect(s.cfg)
	if err != nil {
		return fmt.Errorf("connecting to the Kubernetes API server: %w", err)
	}
	s.client = client
	if s.cfg.Kubelet.Enabled {
		if s.kubelet, err = newKubeletClient(s.cfg, s.deps.TokenFile, rc); err != nil {
			return err
		}
		s.endpoint = s.cfg.Kubelet.Endpoint
	}
	if s.cfg.ProcessOOMKills.Source == ProcessSourceCgroup {
		if s.cgroups, err = cgroupoom.NewReader(s.cfg.ProcessOOMKills.CgroupRoot); err != nil {
			return fmt.Errorf("process_oom_kills.cgroup_root: %w", err)
		}
		if !s.cfg.Metrics.ContainerMemoryPressureStallTime.Enabled {
			s.cgroups.SkipPressure()
		}
	}

	if err := s.startPodWatch(); err != nil {
		return err
	}
	if s.cfg.KernelLog.Enabled {
		if err := s.startKernelLog(); err != nil {
			return fmt.Errorf("kernel_log: %w", err)
		}
	}
	if s.cfg.PodEvents {
		s.podEvents = podevents.New(client, s.cfg.Node, s.podEventDone)
	}
	if s.cfg.Metrics.K8sNodeSystemOomKilled.Enabled || s.cfg.Events.K8sNodeSystemOomKill.Enabled {
		return s.startSystemOOMWatch()
	}
	s.systemOOMs = nil
	return nil
}

// SetLogs gives the scraper the logs pipeline that receives the OOM kill records; before Start.
func (s *Scraper) SetLogs(next consumer.Logs) { s.logs = next }

// Shutdown stops the watches and closes the clients, once; it is safe without Start.
func (s *Scraper) Shutdown(ctx context.Context) error {
	var err error
	s.shutdownOnce.Do(func() {
		defer s.telemetry.Shutdown()
		if s.storage != nil {
			defer func() { err = errors.Join(err, s.storage.Close(ctx)) }()
		}
		s.kubelet.Close()
		if s.kernel != nil {
			defer func() { err = errors.Join(err, s.kernel.reader.Close()) }()
		}
		if s.podEvents != nil {
			defer func() { err = errors.Join(err, s.podEvents.Stop(ctx)) }()
		}
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
