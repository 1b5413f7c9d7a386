// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package scrapertest runs the receiver's scraper against a fake API server, whose watches a
// test drives event by event, a TLS kubelet test server and a clock that moves only when told.
// The scraper's and the receiver's tests use it, and so do the tests that join the receiver with
// other components.
package scrapertest

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadatatest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

// Clock is the scraper's clock in tests: it moves only when a test sets it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now is the time the clock was last set to.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Harness is the scraper's world in a test: the API server holds node podtest.Node, whose
// kubelet is Kubelet, and the clock starts at podtest.T0.
type Harness struct {
	T       *testing.T
	Client  *fake.Clientset
	Kubelet *kubelettest.Kubelet
	// CAFile is the CA of Kubelet's certificate; TokenFile the service-account token the scraper
	// presents to it, token-1 until the test writes another.
	CAFile    string
	TokenFile string
	Clock     *Clock
	Telemetry *componenttest.Telemetry
	// Logs are what the scraper logged at Info level and above.
	Logs *observer.ObservedLogs
	// Host is what Start starts the scraper on; nil: a host without extensions.
	Host component.Host
	// Config is the config of the scraper NewWith made.
	Config *scraper.Config
	// Scraper is the scraper under test; set it with Use.
	Scraper *scraper.Scraper

	logger *zap.Logger

	mu       sync.Mutex
	watchers []*watch.FakeWatcher
	lists    []metav1.ListOptions
	// handled counts the events the scraper handled, by informer resource; expected is how many
	// pod events the test has waited for.
	handled map[string]*atomic.Int64
	// releaseLists releases the pod lists HoldPodLists holds.
	releaseLists func()
	expected     int64
	version      int
}

// New returns the harness of t, without a scraper.
func New(t *testing.T) *Harness {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	h := &Harness{
		T:         t,
		Client:    fake.NewClientset(),
		Kubelet:   kubelettest.New(t),
		Clock:     NewClock(podtest.T0),
		Telemetry: componenttest.NewTelemetry(),
		Logs:      logs,
		logger:    zap.New(core),
		handled:   map[string]*atomic.Int64{"pods": {}, "events": {}},
	}
	t.Cleanup(func() { require.NoError(t, h.Telemetry.Shutdown(context.Background())) })
	dir := t.TempDir()
	h.CAFile = h.Kubelet.WriteCA(t, dir)
	h.TokenFile = filepath.Join(dir, "token")
	h.WriteToken("token-1")

	h.Client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		w := watch.NewFakeWithChanSize(64, false)
		h.mu.Lock()
		h.watchers = append(h.watchers, w)
		h.mu.Unlock()
		return true, w, nil
	})
	h.Client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		h.mu.Lock()
		h.lists = append(h.lists, a.(k8stesting.ListActionImpl).ListOptions)
		h.mu.Unlock()
		return false, nil, nil
	})
	_, err := h.Client.CoreV1().Nodes().Create(context.Background(), &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: podtest.Node},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "localhost"}, {Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return h
}

// Settings are the settings to create the scraper with: its telemetry goes to Telemetry, its
// logs to Logs.
func (h *Harness) Settings() receiver.Settings {
	set := metadatatest.NewSettings(h.Telemetry)
	set.Logger = h.logger
	return set
}

// NewWith returns the harness of t with the scraper of the default config for node
// podtest.Node, whose kubelet is the harness' kubelet test server, changed by tweak.
func NewWith(t *testing.T, tweak func(*scraper.Config)) *Harness {
	t.Helper()
	h := New(t)
	cfg := scraper.NewDefaultConfig()
	cfg.Node = podtest.Node
	cfg.Kubelet.Endpoint = h.Kubelet.Endpoint()
	cfg.Kubelet.CAFile = h.CAFile
	cfg.Kubelet.Timeout = time.Second
	if tweak != nil {
		tweak(cfg)
	}
	require.NoError(t, cfg.Validate())
	s, err := scraper.New(h.Settings(), cfg, h.Deps())
	require.NoError(t, err)
	h.Config = cfg
	h.Use(s)
	return h
}

// Deps are the scraper's connections to this harness.
func (h *Harness) Deps() scraper.Deps {
	return scraper.Deps{
		Connect: func(*scraper.Config) (kubernetes.Interface, *rest.Config, error) {
			return h.Client, &rest.Config{}, nil
		},
		TokenFile: h.TokenFile,
		Now:       h.Clock.Now,
		Handlers: func(resource string, next cache.ResourceEventHandler) cache.ResourceEventHandler {
			return CountingHandler{next, h.handled[resource]}
		},
	}
}

// CountingHandler counts in Handled the events its ResourceEventHandler has handled.
type CountingHandler struct {
	cache.ResourceEventHandler
	Handled *atomic.Int64
}

func (c CountingHandler) OnAdd(obj any, isInInitialList bool) {
	c.ResourceEventHandler.OnAdd(obj, isInInitialList)
	c.Handled.Add(1)
}

func (c CountingHandler) OnUpdate(oldObj, newObj any) {
	c.ResourceEventHandler.OnUpdate(oldObj, newObj)
	c.Handled.Add(1)
}

func (c CountingHandler) OnDelete(obj any) {
	c.ResourceEventHandler.OnDelete(obj)
	c.Handled.Add(1)
}

// Use makes s the scraper under test, created with Deps; the one before, if any, has been shut
// down. Handled events are counted afresh.
func (h *Harness) Use(s *scraper.Scraper) {
	h.Scraper, h.expected = s, 0
	for _, n := range h.handled {
		n.Store(0)
	}
}

// WriteToken replaces the service-account token.
func (h *Harness) WriteToken(token string) {
	h.T.Helper()
	tmp := h.TokenFile + ".tmp"
	require.NoError(h.T, os.WriteFile(tmp, []byte(token), 0o600))
	require.NoError(h.T, os.Rename(tmp, h.TokenFile))
}

// Start starts the scraper, shut down when the test ends, and waits until its pod informer
// watches.
func (h *Harness) Start() {
	h.T.Helper()
	host := h.Host
	if host == nil {
		host = componenttest.NewNopHost()
	}
	n := h.Watchers()
	s := h.Scraper
	require.NoError(h.T, s.Start(context.Background(), host))
	h.T.Cleanup(func() { require.NoError(h.T, s.Shutdown(context.Background())) })
	h.WaitWatchers(n + 1)
}

// HoldPodLists makes every pod list the informers start wait until release is called: an API
// server slow to answer the initial list.
func (h *Harness) HoldPodLists() (release func()) {
	held := make(chan struct{})
	h.Client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-held
		return false, nil, nil
	})
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	h.releaseLists = release
	h.T.Cleanup(release)
	return release
}

// StartListing starts the scraper, shut down when the test ends, without waiting for its pod
// informer: with HoldPodLists its initial list is still to come.
func (h *Harness) StartListing() {
	h.T.Helper()
	host := h.Host
	if host == nil {
		host = componenttest.NewNopHost()
	}
	s := h.Scraper
	require.NoError(h.T, s.Start(context.Background(), host))
	h.T.Cleanup(func() {
		// The informer waits in a held list until it is released; only then can it stop.
		if h.releaseLists != nil {
			h.releaseLists()
		}
		require.NoError(h.T, s.Shutdown(context.Background()))
	})
}

// StartWith starts the scraper with pods already on the API server: they come in the
// informer's initial list, as pods that existed before the collector started.
func (h *Harness) StartWith(pods ...*corev1.Pod) {
	h.T.Helper()
	for _, p := range pods {
		require.NoError(h.T, h.Client.Tracker().Add(h.versioned(p)))
	}
	h.Start()
	h.WaitHandled(int64(len(pods)))
}

// SetKubeletPort writes the port of endpoint into the Node object as its kubelet's port.
func (h *Harness) SetKubeletPort(endpoint string) {
	h.T.Helper()
	n, err := h.Client.CoreV1().Nodes().Get(context.Background(), podtest.Node, metav1.GetOptions{})
	require.NoError(h.T, err)
	_, portText, err := net.SplitHostPort(endpoint)
	require.NoError(h.T, err)
	port, err := strconv.ParseInt(portText, 10, 32)
	require.NoError(h.T, err)
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	_, err = h.Client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	require.NoError(h.T, err)
}

// Watchers is how many pod watches the informers opened.
func (h *Harness) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// WaitWatchers waits until the informers opened n pod watches.
func (h *Harness) WaitWatchers(n int) {
	h.T.Helper()
	require.Eventually(h.T, func() bool { return h.Watchers() >= n }, 5*time.Second, time.Millisecond, "informer watching")
}

// Watcher is the latest pod watch.
func (h *Harness) Watcher() *watch.FakeWatcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watchers[len(h.watchers)-1]
}

// Lists are the options of every pod list the informers made.
func (h *Harness) Lists() []metav1.ListOptions {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]metav1.ListOptions(nil), h.lists...)
}

// At moves the clock; events and scrapes after it are stamped with podtest.T0+d.
func (h *Harness) At(d time.Duration) { h.Clock.Set(podtest.T0.Add(d)) }

// Store makes the change to pod on the API server, with a new resource version, without a
// watch event: a later relist, or the next scraper's list, shows it.
func (h *Harness) Store(kind watch.EventType, pod *corev1.Pod) {
	h.T.Helper()
	h.store(kind, h.versioned(pod))
}

func (h *Harness) store(kind watch.EventType, pod *corev1.Pod) {
	h.T.Helper()
	pods := h.Client.Tracker()
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	switch kind {
	case watch.Added:
		require.NoError(h.T, pods.Add(pod))
	case watch.Modified:
		require.NoError(h.T, pods.Update(gvr, pod, pod.Namespace))
	case watch.Deleted:
		require.NoError(h.T, pods.Delete(gvr, pod.Namespace, pod.Name))
	}
}

// Send delivers one watch event, stores the pod for later relists, and waits until the
// scraper handled it.
func (h *Harness) Send(kind watch.EventType, pod *corev1.Pod) {
	h.T.Helper()
	pod = h.versioned(pod)
	h.store(kind, pod)
	h.Watcher().Action(kind, pod.DeepCopy())
	h.WaitHandled(1)
}

// Relist replaces the stored pods without watch events and breaks the watch: the informer
// lists again and sees only the end state. The test waits for the events that brings.
func (h *Harness) Relist(pods ...*corev1.Pod) {
	h.T.Helper()
	list, err := h.Client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	require.NoError(h.T, err)
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	for i := range list.Items {
		require.NoError(h.T, h.Client.Tracker().Delete(gvr, list.Items[i].Namespace, list.Items[i].Name))
	}
	for _, p := range pods {
		require.NoError(h.T, h.Client.Tracker().Add(h.versioned(p)))
	}
	n := h.Watchers()
	// A watch that ends with "410 Gone" makes the informer list again.
	h.Watcher().Error(&metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired, Message: "resource version too old",
	})
	h.WaitWatchers(n + 1)
}

// versioned gives pod a new resource version, as the API server does on every change; the
// informer passes on a relisted pod only if its version changed.
func (h *Harness) versioned(pod *corev1.Pod) *corev1.Pod {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version++
	pod = pod.DeepCopy()
	pod.ResourceVersion = strconv.Itoa(h.version)
	return pod
}

// WaitHandled waits until the scraper handled n more pod events.
func (h *Harness) WaitHandled(n int64) {
	h.T.Helper()
	h.expected += n
	handled := h.handled["pods"]
	require.Eventually(h.T, func() bool { return handled.Load() >= h.expected }, 5*time.Second, time.Millisecond)
}

// Scrape scrapes.
func (h *Harness) Scrape() pmetric.Metrics {
	h.T.Helper()
	md, err := h.Scraper.Scrape(context.Background())
	require.NoError(h.T, err)
	return md
}
