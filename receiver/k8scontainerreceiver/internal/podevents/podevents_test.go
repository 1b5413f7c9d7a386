// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package podevents

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var t0 = time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)

func kill(id string) Kill {
	return Kill{Namespace: "shop", Pod: "memhog-7d9f", PodUID: "u1", Container: "app", ID: id, At: t0, Message: "Container app OOM-killed"}
}

// outcomes records what the Writer reports.
type outcomes struct {
	mu  sync.Mutex
	got []Outcome
}

func (o *outcomes) done(_ Kill, out Outcome, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, out)
}

func (o *outcomes) list() []Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Outcome(nil), o.got...)
}

func TestOneEventPerKill(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	var o outcomes
	w := New(client, "node-a", o.done)
	w.Add(kill("c1"))
	w.Add(kill("c2"))
	// The same kill again, as a restarted collector might report it.
	w.Add(kill("c1"))
	require.NoError(t, w.Stop(context.Background()))
	require.NoError(t, w.Stop(context.Background()), "a second Stop")
	assert.Equal(t, []Outcome{Written, Written, Exists}, o.list())

	events, err := client.CoreV1().Events("shop").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var names []string
	for _, ev := range events.Items {
		names = append(names, ev.Name)
	}
	assert.ElementsMatch(t, []string{Name(kill("c1")), Name(kill("c2"))}, names)
}

func TestEvent(t *testing.T) {
	t.Parallel()
	ev := Event(kill("c1"), "node-a")
	assert.Equal(t, corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "memhog-7d9f", UID: "u1", FieldPath: "spec.containers{app}",
	}, ev.InvolvedObject)
	assert.Equal(t, "OOMKill", ev.Reason)
	assert.Equal(t, corev1.EventTypeWarning, ev.Type)
	assert.Equal(t, corev1.EventSource{Component: "oomwatch", Host: "node-a"}, ev.Source)
	assert.Equal(t, "oomwatch", ev.ReportingController)
	assert.Equal(t, "oomwatch-node-a", ev.ReportingInstance)
	assert.Equal(t, "shop", ev.Namespace)
	assert.Equal(t, int32(1), ev.Count)
	assert.Equal(t, t0, ev.FirstTimestamp.UTC())
	assert.Equal(t, "Container app OOM-killed", ev.Message)
}

// TestName: one name per kill, the same every time, a valid object name whatever the pod's.
func TestName(t *testing.T) {
	t.Parallel()
	assert.Equal(t, Name(kill("c1")), Name(kill("c1")))
	assert.NotEqual(t, Name(kill("c1")), Name(kill("c2")))
	other := kill("c1")
	other.Container = "sidecar"
	assert.NotEqual(t, Name(kill("c1")), Name(other))
	assert.True(t, strings.HasPrefix(Name(kill("c1")), "memhog-7d9f.oomkill."))
	long := kill("c1")
	long.Pod = strings.Repeat("a", 240) + "-" + strings.Repeat("b", 12)
	for _, k := range []Kill{kill("c1"), long} {
		assert.Empty(t, validation.IsDNS1123Subdomain(Name(k)), Name(k))
	}
}

func TestFailedAndDroppedAreReported(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	release := make(chan struct{})
	writing := make(chan struct{}, 1)
	client.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		select {
		case writing <- struct{}{}:
		default:
		}
		<-release
		return true, nil, errors.New("the API server is away")
	})
	var o outcomes
	w := New(client, "node-a", o.done)
	// One is being written, queueSize wait: the next is dropped.
	w.Add(kill("first"))
	<-writing
	for i := range queueSize + 1 {
		w.Add(kill(string(rune('a' + i%26))))
	}
	require.Eventually(t, func() bool { return len(o.list()) >= 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, Dropped, o.list()[0])
	close(release)
	require.NoError(t, w.Stop(context.Background()))
	got := o.list()
	require.Len(t, got, queueSize+2)
	for _, out := range got[1:] {
		assert.Equal(t, Failed, out)
	}
}

// TestStopGivesUpWhenItsContextEnds: a Stop whose context ends does not wait for an API server
// that does not answer.
func TestStopGivesUpWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	client.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		time.Sleep(50 * time.Millisecond)
		return true, nil, errors.New("slow")
	})
	var o outcomes
	w := New(client, "node-a", o.done)
	for i := range 20 {
		w.Add(kill(string(rune('a' + i))))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w.Stop(ctx), context.DeadlineExceeded)
}
