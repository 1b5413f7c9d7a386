// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
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
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/slimpod"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/workload"
)

// deps are the receiver's connections to the outside, replaced in tests.
type deps struct {
	// client connects to the API server; the rest config also carries the kubeConfig
	// credentials to the kubelet.
	client func(cfg *Config) (kubernetes.Interface, *rest.Config, error)
	// tokenFile is the service-account token presented to the kubelet.
	tokenFile string
	now       func() time.Time
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

// statsKey finds a container in the Summary.
type statsKey struct{ podUID, container string }

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
	systemOOMs   *systemOOMs
	eventFactory informers.SharedInformerFactory

	// endpoint is the kubelet address, from the config or resolved from the Node object.
	endpoint string
	// kubeletProblem is the last Summary error, logged only when it changes.
	kubeletProblem string
	stats          map[statsKey]*stats.ContainerStats
	// workingSets are the latest working sets read, for the kill records; scrapes numbers them.
	workingSets map[statsKey]workingSets
	scrapes     uint64
	// lastScrape is when the previous scrape looked: the start of this scrape's delta points.
	lastScrape pcommon.Timestamp

	// processCounters are the process OOM kill counters by container ID; processPrimed tells
	// that one reading (of this run, or restored) exists; processKills are this scrape's kills.
	processCounters map[string]*processCounter
	processPrimed   bool
	processKills    map[statsKey]processKills
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
	// events counts handled informer events; tests wait on it.
	events atomic.Int64

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
		systemOOMs: newSystemOOMs(cfg.Node),
		stats:      map[statsKey]*stats.ContainerStats{},

		workingSets:     map[statsKey]workingSets{},
		processCounters: map[string]*processCounter{},
		processKills:    map[statsKey]processKills{},
	}
	for _, f := range cfg.Extract.Labels {
		s.labels = append(s.labels, attributeName{f.Key, f.attribute("k8s.pod.label.")})
	}
	for _, f := range cfg.Extract.Annotations {
		s.annotations = append(s.annotations, attributeName{f.Key, f.attribute("k8s.pod.annotation.")})
	}
	return s, nil
}

// lastLookedKey holds, in the storage client, when the receiver last handed a scrape on: 8 bytes
// of Unix nanoseconds, then, as JSON, the terminations it knew that ended in that second.
const lastLookedKey = "last_looked"

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

	var opts []informers.SharedInformerOption
	if s.cfg.Node != "" {
		selector := fields.OneTermEqualSelector("spec.nodeName", s.cfg.Node).String()
		opts = append(opts, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = selector }))
	}
	s.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, opts...)
	inf := s.factory.Core().V1().Pods().Informer()
	if err := inf.SetTransform(slimpod.Transform(s.cfg.Extract.labelKeys(), s.cfg.Extract.annotationKeys())); err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    s.onAdd,
		UpdateFunc: s.onUpdate,
		DeleteFunc: s.onDelete,
	}); err != nil {
		return err
	}
	s.stopCh = make(chan struct{})
	s.factory.Start(s.stopCh)
	if s.cfg.Metrics.K8sNodeSystemOomKilled.Enabled || s.cfg.Events.K8sNodeSystemOomKill.Enabled {
		return s.startSystemOOMWatch()
	}
	s.systemOOMs = nil
	return nil
}

// openStorage connects to the configured storage extension and reads when an earlier run of the
// receiver last looked.
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
	b, err := client.Get(ctx, lastLookedKey)
	switch {
	case err != nil:
		s.logger.Warn("Reading when the receiver last looked failed; kills while it was down are taken as history", zap.Error(err))
	case len(b) >= 8:
		horizon := time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
		var edge []termination.Key
		if len(b) > 8 {
			edge = []termination.Key{}
			if err := json.Unmarshal(b[8:], &edge); err != nil {
				s.logger.Warn("Discarding a damaged record of the terminations seen when the receiver last looked", zap.Error(err))
				edge = nil
			}
		}
		s.tracker.SetHorizon(horizon, edge)
		s.restoreSystemOOMCounts(ctx, horizon)
	case b != nil:
		s.logger.Warn("Discarding a damaged record of when the receiver last looked", zap.Int("bytes", len(b)))
	default:
		// The first run with this storage: from now on, whatever ends is news to a later run,
		// even if this one never hands a scrape on.
		// Nothing is known yet of what ended in this second: no edge.
		s.saveLastLooked(ctx, s.deps.now(), nil)
	}
	return nil
}

// saveLastLooked records that whatever ended before at has been reported, or is in the scrape
// about to be handed on.
func (s *containerScraper) saveLastLooked(ctx context.Context, at time.Time, edge []termination.Key) {
	if s.storage == nil || at.IsZero() {
		return
	}
	record := binary.LittleEndian.AppendUint64(nil, uint64(at.UnixNano()))
	if edge != nil {
		keys, err := json.Marshal(edge)
		if err != nil {
			return // a Key always marshals
		}
		record = append(record, keys...)
	}
	err := s.storage.Set(ctx, lastLookedKey, record)
	if (err != nil) != s.storageFailing {
		s.storageFailing = err != nil
		if err != nil {
			s.logger.Warn("Recording when the receiver last looked failed; it is retried at every scrape", zap.Error(err))
		} else {
			s.logger.Info("Recording when the receiver last looked works again")
		}
	}
}

func newKubeletClient(cfg *Config, tokenFile string, rc *rest.Config) (*kubelet.Client, error) {
	k := cfg.Kubelet
	return kubelet.NewClient(kubelet.Settings{
		AuthType:           k.AuthType,
		CAFile:             k.CAFile,
		CertFile:           k.CertFile,
		KeyFile:            k.KeyFile,
		InsecureSkipVerify: k.InsecureSkipVerify,
		Timeout:            k.Timeout,
		TokenFile:          tokenFile,
		RestConfig:         rc,
	})
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

// onAdd handles a pod the informer did not hold. One that is not in its initial list was
// created while the receiver watched (or while its watch was down): its terminations are news.
func (s *containerScraper) onAdd(obj any, isInInitialList bool) {
	if isInInitialList {
		s.onUpsert(obj)
		return
	}
	if pod, ok := obj.(*slimpod.Pod); ok {
		s.count(s.tracker.UpsertCreated(pod, s.deps.now()))
	}
	s.events.Add(1)
}

func (s *containerScraper) onUpsert(obj any) {
	if pod, ok := obj.(*slimpod.Pod); ok {
		s.count(s.tracker.Upsert(pod, s.deps.now()))
	}
	s.events.Add(1)
}

// onUpdate handles a changed pod. An update may also carry another pod under the same name:
// when the watch was down while a pod was deleted and re-created, the relist delivers the new
// pod as an update of the old one. The old one is then finished like a deleted pod.
func (s *containerScraper) onUpdate(oldObj, newObj any) {
	prev, okPrev := oldObj.(*slimpod.Pod)
	next, okNext := newObj.(*slimpod.Pod)
	if okPrev && okNext && prev.UID != next.UID {
		s.count(s.tracker.Delete(prev, s.deps.now()))
		s.onAdd(next, false)
		return
	}
	s.onUpsert(newObj)
}

func (s *containerScraper) onDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*slimpod.Pod); ok {
		s.count(s.tracker.Delete(pod, s.deps.now()))
	}
	s.events.Add(1)
}

func (s *containerScraper) count(o containerstate.Observed) {
	ctx := context.Background()
	if o.Terminations > 0 {
		s.telemetry.K8sContainerTerminationsObserved.Add(ctx, int64(o.Terminations))
	}
	if o.OOMKills > 0 {
		s.telemetry.K8sContainerOomKillsObserved.Add(ctx, int64(o.OOMKills))
	}
	if o.HistoryOOMKills > 0 {
		s.telemetry.K8sContainerOomKillsHistory.Add(ctx, int64(o.HistoryOOMKills))
	}
	if o.Unseen > 0 {
		s.telemetry.K8sContainerTerminationsUnseen.Add(ctx, int64(o.Unseen))
	}
	if o.Dropped > 0 {
		s.telemetry.K8sContainerTerminationsDropped.Add(ctx, int64(o.Dropped))
	}
}

// scrape reports every tracked container. A kubelet failure costs the stats of this scrape
// only; it is counted and logged when it changes, not returned, since the scraper controller
// would log a returned error on every scrape.
func (s *containerScraper) scrape(ctx context.Context) (pmetric.Metrics, error) {
	now := s.deps.now()
	clear(s.stats)
	processOK := false
	// A kubelet that did not answer for the Summary is not asked again in the same scrape.
	kubeletOK := s.kubelet != nil && s.collectStats(ctx)
	if s.cfg.Metrics.K8sContainerProcessOomKilled.Enabled && (kubeletOK || s.cgroups != nil) {
		processOK = s.collectProcessKills(ctx)
	}
	nowTS := pcommon.NewTimestampFromTime(now)
	if s.lastScrape == 0 {
		s.lastScrape = s.started
	}
	containers := 0
	// Whatever ended before now is reported by this scrape or was by an earlier one. Recorded
	// before the scrape is handed on, with nothing observed in between: a restart never reports
	// a termination twice, at the cost of taking as history what a scrape lost by a crash in
	// between had reported.
	saveLooked := func(edge []termination.Key) { s.saveLastLooked(ctx, now, edge) }
	s.tracker.DrainAfter(now, saveLooked, func(p *containerstate.Pod, c *containerstate.Container, points []containerstate.Point) {
		containers++
		s.record(nowTS, p, c, points, processOK)
	})
	if s.systemOOMs != nil {
		s.recordSystemOOMs(ctx, nowTS)
	}
	s.lastScrape = nowTS
	s.telemetry.K8sContainerContainersTracked.Record(ctx, int64(containers))
	s.rememberWorkingSets()
	s.emitLogs(ctx)
	return s.mb.Emit(), nil
}

func (s *containerScraper) record(now pcommon.Timestamp, p *containerstate.Pod, c *containerstate.Container, points []containerstate.Point, processOK bool) {
	rb := s.mb.NewResourceBuilder()
	rb.SetK8sNamespaceName(p.Namespace)
	rb.SetK8sPodName(p.Name)
	rb.SetK8sPodUID(string(p.UID))
	rb.SetK8sContainerName(c.Name)
	rb.SetK8sNodeName(p.Node)
	if id := runtimeID(c.ContainerID); id != "" {
		rb.SetContainerID(id)
	}
	setWorkload(rb, p.Workload)
	res := rb.Emit()
	for _, a := range s.labels {
		if v, ok := p.Labels[a.key]; ok {
			res.Attributes().PutStr(a.attribute, v)
		}
	}
	for _, a := range s.annotations {
		if v, ok := p.Annotations[a.key]; ok {
			res.Attributes().PutStr(a.attribute, v)
		}
	}

	s.flagPoints = s.flagPoints[:0]
	for _, pt := range points {
		flag := int64(0)
		if pt.OOMKilled {
			flag = 1
		}
		fp := metadata.FlagPoint{Unknown: pt.Unknown}
		if !pt.Since.IsZero() {
			fp.Start = pcommon.NewTimestampFromTime(pt.Since)
		}
		s.flagPoints = append(s.flagPoints, fp)
		s.mb.RecordK8sContainerOomKilledDataPoint(pcommon.NewTimestampFromTime(pt.Time), flag, pt.Instance)
	}
	s.mb.RecordK8sContainerRestartCountDataPoint(now, int64(c.RestartCount))
	if c.HasLast {
		s.mb.RecordK8sContainerLastTerminatedExitCodeDataPoint(now, int64(c.Last.ExitCode), c.Last.Reason)
	}
	if c.MemoryLimit > 0 {
		s.mb.RecordK8sContainerMemoryLimitDataPoint(now, c.MemoryLimit)
	}
	if c.MemoryRequest > 0 {
		s.mb.RecordK8sContainerMemoryRequestDataPoint(now, c.MemoryRequest)
	}
	logged := false
	if processOK {
		logged = s.recordProcessKills(now, p, c)
	}
	opts := []metadata.ResourceMetricsOption{metadata.WithResource(res), metadata.WithFlagPoints(s.flagPoints), metadata.WithDeltaStart(s.lastScrape)}
	if st := s.stats[statsKey{string(p.UID), c.Name}]; st != nil {
		s.recordStats(st, c.MemoryLimit)
		if !st.StartTime.IsZero() {
			// CPU time and page faults restart from zero with each container instance.
			opts = append(opts, metadata.WithInstanceStartTime(pcommon.NewTimestampFromTime(st.StartTime.Time)))
		}
	}
	s.mb.EmitForResource(opts...)
	if kills := c.Kills(); len(kills) > 0 && s.logs != nil {
		s.recordKills(p, c, kills)
		logged = true
	}
	if logged {
		s.lb.EmitForResource(metadata.WithLogsResource(res), metadata.WithEventSeverity(now))
	}
}

// setWorkload sets the workload names that are known.
func setWorkload(rb *metadata.ResourceBuilder, w workload.Names) {
	for _, a := range [...]struct {
		name string
		set  func(string)
	}{
		{w.ReplicaSet, rb.SetK8sReplicasetName},
		{w.Deployment, rb.SetK8sDeploymentName},
		{w.StatefulSet, rb.SetK8sStatefulsetName},
		{w.DaemonSet, rb.SetK8sDaemonsetName},
		{w.Job, rb.SetK8sJobName},
		{w.CronJob, rb.SetK8sCronjobName},
	} {
		if a.name != "" {
			a.set(a.name)
		}
	}
}

// runtimeID strips the runtime scheme of a container ID (containerd://<id>).
func runtimeID(id string) string {
	if i := strings.Index(id, "://"); i >= 0 {
		return id[i+3:]
	}
	return id
}

func (s *containerScraper) reportKubelet(err error) {
	if err == nil {
		if s.kubeletProblem != "" {
			s.logger.Info("Kubelet Summary API is answering again", zap.String("endpoint", s.endpoint))
			s.kubeletProblem = ""
		}
		return
	}
	reason := metadata.AttributeReasonTransport.String()
	if ke, ok := errors.AsType[*kubelet.Error](err); ok {
		reason = ke.Reason
	} else if errors.Is(err, errEndpoint) {
		reason = metadata.AttributeReasonEndpoint.String()
	}
	s.telemetry.K8sContainerKubeletErrors.Add(context.Background(), 1,
		metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason))))
	if msg := err.Error(); msg != s.kubeletProblem {
		s.logger.Warn("No container stats from the kubelet Summary API; termination metrics go on",
			zap.String("reason", reason), zap.Error(err))
		s.kubeletProblem = msg
	}
}
