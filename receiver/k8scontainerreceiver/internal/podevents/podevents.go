// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package podevents writes a Kubernetes Event on a pod for each OOM kill the receiver reports,
// so that `kubectl describe pod` shows the kills the kubelet records nowhere (processes killed
// inside a living container) and why each happened, in one line.
//
// An Event is named after its kill: the same kill written twice (after a collector restart
// that reports it again, or from two collectors) meets the first Event and is not written again.
// Writes go through a bounded queue to one goroutine, so a slow API server never holds up a
// scrape; a kill that finds the queue full is dropped and counted, as a write that fails is.
package podevents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// The Event's fields that name what wrote it and why.
const (
	Reason    = "OOMKill"
	Component = "oomwatch"
)

// queueSize bounds the kills waiting to be written: a burst of kills on one node, while the API
// server is slow, is not held in memory without end.
const queueSize = 256

// writeTimeout bounds one Event's write.
const writeTimeout = 10 * time.Second

// Kill is one kill to write an Event for.
type Kill struct {
	Namespace, Pod string
	PodUID         types.UID
	Container      string
	// ID tells this kill from every other kill of the container: the killed instance's container
	// ID, or, for processes killed inside a living instance, that ID and when they were counted.
	ID string
	// At is when the kill happened, or was counted.
	At time.Time
	// Message is the one-line explanation.
	Message string
}

// Outcome is how writing one Event ended.
type Outcome int

// The outcomes.
const (
	// Written: the Event was created.
	Written Outcome = iota
	// Exists: an Event of the same kill was there already.
	Exists
	// Failed: the API server refused the Event or did not answer.
	Failed
	// Dropped: the queue was full.
	Dropped
)

// Writer writes the Events, one at a time, in the order the kills were added.
type Writer struct {
	client kubernetes.Interface
	// host names the node in the Event's source and reporting instance.
	host string
	// done is called with each kill's outcome and the error, if any, from the writing goroutine
	// (Dropped from Add's).
	done func(Kill, Outcome, error)

	queue   chan Kill
	stopped chan struct{}
	once    sync.Once
	ctx     context.Context
	cancel  context.CancelFunc
}

// New returns a Writer that writes through client from node host, and starts its goroutine.
func New(client kubernetes.Interface, host string, done func(Kill, Outcome, error)) *Writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		client: client, host: host, done: done,
		queue: make(chan Kill, queueSize), stopped: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	go w.run()
	return w
}

// Add queues a kill; when the queue is full it is dropped, and reported to done so.
func (w *Writer) Add(k Kill) {
	select {
	case w.queue <- k:
	default:
		w.done(k, Dropped, errors.New("the queue of pod events is full"))
	}
}

// Stop writes the kills queued so far until ctx ends, then gives up on the rest; safe to call
// more than once. No Add may follow it.
func (w *Writer) Stop(ctx context.Context) error {
	var err error
	w.once.Do(func() {
		close(w.queue)
		select {
		case <-w.stopped:
		case <-ctx.Done():
			w.cancel()
			<-w.stopped
			err = fmt.Errorf("writing the pod events still queued: %w", ctx.Err())
		}
		w.cancel()
	})
	return err
}

func (w *Writer) run() {
	defer close(w.stopped)
	for k := range w.queue {
		outcome, err := w.write(k)
		w.done(k, outcome, err)
	}
}

func (w *Writer) write(k Kill) (Outcome, error) {
	ctx, cancel := context.WithTimeout(w.ctx, writeTimeout)
	defer cancel()
	_, err := w.client.CoreV1().Events(k.Namespace).Create(ctx, Event(k, w.host), metav1.CreateOptions{})
	switch {
	case err == nil:
		return Written, nil
	case apierrors.IsAlreadyExists(err):
		return Exists, nil
	default:
		return Failed, err
	}
}

// Event is the Event of a kill, written from node host.
func Event(k Kill, host string) *corev1.Event {
	at := metav1.NewTime(k.At)
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: Name(k), Namespace: k.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: k.Namespace, Name: k.Pod, UID: k.PodUID,
			FieldPath: "spec.containers{" + k.Container + "}",
		},
		Reason:              Reason,
		Message:             k.Message,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: Component, Host: host},
		FirstTimestamp:      at,
		LastTimestamp:       at,
		Count:               1,
		ReportingController: Component,
		ReportingInstance:   Component + "-" + host,
	}
}

// maxPodPart bounds the pod name's part of an Event name, which must be at most 253 characters.
const maxPodPart = 253 - len(".oomkill.") - 16

// Name is the name of a kill's Event: the pod's name and a hash of the kill, so that the same
// kill always has the same name.
func Name(k Kill) string {
	sum := sha256.Sum256([]byte(string(k.PodUID) + "\x00" + k.Container + "\x00" + k.ID))
	pod := k.Pod
	if len(pod) > maxPodPart {
		// A name's part ends with a letter or a digit.
		pod = strings.TrimRight(pod[:maxPodPart], ".-")
	}
	return pod + ".oomkill." + hex.EncodeToString(sum[:8])
}
