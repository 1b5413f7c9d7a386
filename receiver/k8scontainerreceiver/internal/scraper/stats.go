// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
)

// The kubelet: its client, its endpoint (configured or read from the Node object), the Summary
// of each scrape indexed by container, and its failures, counted and logged when they change.

// defaultKubeletPort is used when the Node object does not say.
const defaultKubeletPort = 10250

// errEndpoint marks a failure to find the kubelet's address.
var errEndpoint = errors.New("kubelet endpoint")

// statsKey finds a container in the Summary.
type statsKey struct{ podUID, container string }

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

// collectStats fetches the Summary and indexes its containers by pod UID and name. It tells
// whether the kubelet answered.
func (s *Scraper) collectStats(ctx context.Context) bool {
	if s.endpoint == "" {
		ep, err := s.resolveEndpoint(ctx)
		if err != nil {
			s.reportKubelet(err)
			return false
		}
		s.endpoint = ep
	}
	summary, err := s.kubelet.Summary(ctx, s.endpoint)
	s.reportKubelet(err)
	if err != nil {
		if s.cfg.Kubelet.Endpoint == "" {
			// The node may have a new address: look it up again next time.
			s.endpoint = ""
		}
		return false
	}
	for i := range summary.Pods {
		pod := &summary.Pods[i]
		for j := range pod.Containers {
			s.stats[statsKey{pod.PodRef.UID, pod.Containers[j].Name}] = &pod.Containers[j]
		}
	}
	return true
}

// resolveEndpoint reads the kubelet's address and port from the Node object.
func (s *Scraper) resolveEndpoint(ctx context.Context) (string, error) {
	node, err := s.client.CoreV1().Nodes().Get(ctx, s.cfg.Node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("%w: reading node %q: %w", errEndpoint, s.cfg.Node, err)
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = defaultKubeletPort
	}
	for _, kind := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeHostName, corev1.NodeExternalIP} {
		for _, a := range node.Status.Addresses {
			if a.Type == kind && a.Address != "" {
				return net.JoinHostPort(a.Address, strconv.Itoa(port)), nil
			}
		}
	}
	return "", fmt.Errorf("%w: node %q has no address", errEndpoint, s.cfg.Node)
}

func (s *Scraper) reportKubelet(err error) {
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
