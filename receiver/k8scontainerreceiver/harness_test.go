// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
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

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadatatest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/kubelettest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/scrape")

// clock is the receiver's clock in tests: it starts at podtest.T0 and only moves when a test
// moves it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// harness runs the scraper against a fake API server, whose pod watch the test drives event
// by event, and a TLS kubelet test server.
type harness struct {
	t         *testing.T
	client    *fake.Clientset
	kubelet   *kubelettest.Kubelet
	clock     *clock
	telemetry *componenttest.Telemetry
	logs      *observer.ObservedLogs
	scraper   *containerScraper
	tokenFile string
	// host is what the scraper starts on; nil: a host without extensions.
	host component.Host

	mu       sync.Mutex
	watchers []*watch.FakeWatcher
	lists    []metav1.ListOptions
	// handled counts the events the receiver handled, by informer resource; expected is how
	// many pod events the test has waited for.
	handled  map[string]*atomic.Int64
	expected int64
	version  int
}

func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	h := &harness{
		t:         t,
		client:    fake.NewClientset(),
		kubelet:   kubelettest.New(t),
		clock:     &clock{now: podtest.T0},
		telemetry: componenttest.NewTelemetry(),
		handled:   map[string]*atomic.Int64{"pods": {}, "events": {}},
	}
	t.Cleanup(func() { require.NoError(t, h.telemetry.Shutdown(context.Background())) })
	dir := t.TempDir()
	h.tokenFile = filepath.Join(dir, "token")
	writeFile(t, h.tokenFile, "token-1")

	h.client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		w := watch.NewFakeWithChanSize(64, false)
		h.mu.Lock()
		h.watchers = append(h.watchers, w)
		h.mu.Unlock()
		return true, w, nil
	})
	h.client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		h.mu.Lock()
		h.lists = append(h.lists, a.(k8stesting.ListActionImpl).ListOptions)
		h.mu.Unlock()
		return false, nil, nil
	})
	_, err := h.client.CoreV1().Nodes().Create(context.Background(), &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: podtest.Node},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "localhost"}, {Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	cfg := createDefaultConfig().(*Config)
	cfg.Node = podtest.Node
	cfg.Kubelet.Endpoint = h.kubelet.Endpoint()
	cfg.Kubelet.CAFile = h.kubelet.WriteCA(t, dir)
	cfg.Kubelet.Timeout = time.Second
	if tweak != nil {
		tweak(cfg)
	}
	require.NoError(t, cfg.Validate())

	core, logs := observer.New(zap.InfoLevel)
	h.logs = logs
	set := metadatatest.NewSettings(h.telemetry)
	set.Logger = zap.New(core)
	h.scraper, err = newScraper(set, cfg, h.deps())
	require.NoError(t, err)
	return h
}

func (h *harness) deps() deps {
	return deps{
		client:    func(*Config) (kubernetes.Interface, *rest.Config, error) { return h.client, &rest.Config{}, nil },
		tokenFile: h.tokenFile,
		now:       h.clock.Now,
		handlers: func(resource string, next cache.ResourceEventHandler) cache.ResourceEventHandler {
			return countingHandler{next, h.handled[resource]}
		},
	}
}

// countingHandler counts the events its receiver's handler has handled.
type countingHandler struct {
	cache.ResourceEventHandler
	handled *atomic.Int64
}

func (c countingHandler) OnAdd(obj any, isInInitialList bool) {
	c.ResourceEventHandler.OnAdd(obj, isInInitialList)
	c.handled.Add(1)
}

func (c countingHandler) OnUpdate(oldObj, newObj any) {
	c.ResourceEventHandler.OnUpdate(oldObj, newObj)
	c.handled.Add(1)
}

func (c countingHandler) OnDelete(obj any) {
	c.ResourceEventHandler.OnDelete(obj)
	c.handled.Add(1)
}

// start starts the scraper and waits until the informer watches.
func (h *harness) start() {
	h.t.Helper()
	host := h.host
	if host == nil {
		host = componenttest.NewNopHost()
	}
	require.NoError(h.t, h.scraper.start(context.Background(), host))
	h.t.Cleanup(func() { require.NoError(h.t, h.scraper.shutdown(context.Background())) })
	h.waitWatchers(1)
}

// setKubeletPort writes the port of endpoint into the Node object as its kubelet's port.
func (h *harness) setKubeletPort(endpoint string) {
	h.t.Helper()
	n, err := h.client.CoreV1().Nodes().Get(context.Background(), podtest.Node, metav1.GetOptions{})
	require.NoError(h.t, err)
	_, portText, err := net.SplitHostPort(endpoint)
	require.NoError(h.t, err)
	port, err := strconv.Atoi(portText)
	require.NoError(h.t, err)
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	_, err = h.client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	require.NoError(h.t, err)
}

// startWith starts the scraper with pods already on the API server: they come in the informer's
// initial list, as pods that existed before the collector started.
func (h *harness) startWith(pods ...*corev1.Pod) {
	h.t.Helper()
	for _, p := range pods {
		require.NoError(h.t, h.client.Tracker().Add(h.versioned(p)))
	}
	h.start()
	h.waitHandled(int64(len(pods)))
}

func (h *harness) waitWatchers(n int) {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.watchers) >= n
	}, 5*time.Second, time.Millisecond, "informer watching")
}

func (h *harness) watcher() *watch.FakeWatcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watchers[len(h.watchers)-1]
}

// at moves the clock; events and scrapes after it are stamped with t0+d.
func (h *harness) at(d time.Duration) { h.clock.Set(podtest.T0.Add(d)) }

// send delivers one watch event, stores the pod for later relists, and waits until the
// receiver handled it.
func (h *harness) send(kind watch.EventType, pod *corev1.Pod) {
	h.t.Helper()
	pod = h.versioned(pod)
	pods := h.client.Tracker()
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	switch kind {
	case watch.Added:
		require.NoError(h.t, pods.Add(pod))
	case watch.Modified:
		require.NoError(h.t, pods.Update(gvr, pod, pod.Namespace))
	case watch.Deleted:
		require.NoError(h.t, pods.Delete(gvr, pod.Namespace, pod.Name))
	}
	h.watcher().Action(kind, pod.DeepCopy())
	h.waitHandled(1)
}

// relist replaces the stored pods without watch events and breaks the watch: the informer
// lists again and sees only the end state.
func (h *harness) relist(pods ...*corev1.Pod) {
	h.t.Helper()
	list, err := h.client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	require.NoError(h.t, err)
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	for i := range list.Items {
		require.NoError(h.t, h.client.Tracker().Delete(gvr, list.Items[i].Namespace, list.Items[i].Name))
	}
	for _, p := range pods {
		require.NoError(h.t, h.client.Tracker().Add(h.versioned(p)))
	}
	h.mu.Lock()
	n := len(h.watchers)
	h.mu.Unlock()
	// A watch that ends with "410 Gone" makes the informer list again.
	h.watcher().Error(&metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired, Message: "resource version too old",
	})
	h.waitWatchers(n + 1)
}

// versioned gives pod a new resource version, as the API server does on every change; the
// informer passes on a relisted pod only if its version changed.
func (h *harness) versioned(pod *corev1.Pod) *corev1.Pod {
	h.version++
	pod = pod.DeepCopy()
	pod.ResourceVersion = strconv.Itoa(h.version)
	return pod
}

// waitHandled waits until the receiver handled n more pod events.
func (h *harness) waitHandled(n int64) {
	h.t.Helper()
	h.expected += n
	require.Eventually(h.t, func() bool { return h.handled["pods"].Load() >= h.expected }, 5*time.Second, time.Millisecond)
}

func (h *harness) scrape() pmetric.Metrics {
	h.t.Helper()
	md, err := h.scraper.scrape(context.Background())
	require.NoError(h.t, err)
	return md
}

// checkGolden compares md with testdata/scrape/<name>.yaml, or rewrites it under -update.
func checkGolden(t *testing.T, name string, md pmetric.Metrics) {
	t.Helper()
	path := filepath.Join("testdata", "scrape", name+".yaml")
	if *update {
		assert.NoError(t, golden.WriteMetrics(t, path, md, golden.SkipMetricTimestampNormalization()))
	}
	want, err := golden.ReadMetrics(path)
	require.NoError(t, err)
	require.NoError(t, pmetrictest.CompareMetrics(want, md,
		pmetrictest.IgnoreResourceMetricsOrder(),
		pmetrictest.IgnoreMetricsOrder(),
		pmetrictest.IgnoreStartTimestamp(),
	))
}

// oomPoints returns the k8s.container.oom_killed points per container name as
// "instance=value@seconds after t0".
func oomPoints(md pmetric.Metrics) map[string][]string {
	out := map[string][]string{}
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rm := rms.At(i)
		name, _ := rm.Resource().Attributes().Get("k8s.container.name")
		pod, _ := rm.Resource().Attributes().Get("k8s.pod.uid")
		key := pod.Str() + "/" + name.Str()
		ms := rm.ScopeMetrics().At(0).Metrics()
		for j := range ms.Len() {
			if ms.At(j).Name() != "k8s.container.oom_killed" {
				continue
			}
			dps := ms.At(j).Gauge().DataPoints()
			for k := range dps.Len() {
				dp := dps.At(k)
				inst, _ := dp.Attributes().Get("k8s.container.restart_count")
				out[key] = append(out[key], fmt.Sprintf("%d=%d@%s", inst.Int(), dp.IntValue(), dp.Timestamp().AsTime().Sub(podtest.T0)))
			}
		}
	}
	return out
}

// metricNames lists the metrics of one container.
func metricNames(md pmetric.Metrics, podUID, container string) []string {
	var out []string
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		attrs := rms.At(i).Resource().Attributes()
		uid, _ := attrs.Get("k8s.pod.uid")
		name, _ := attrs.Get("k8s.container.name")
		if uid.Str() != podUID || name.Str() != container {
			continue
		}
		ms := rms.At(i).ScopeMetrics().At(0).Metrics()
		for j := range ms.Len() {
			out = append(out, ms.At(j).Name())
		}
	}
	return out
}

func reasonAttr(r metadata.AttributeReason) string { return r.String() }
