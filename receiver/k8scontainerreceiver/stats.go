// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
)

// defaultKubeletPort is used when the Node object does not say.
const defaultKubeletPort = 10250

// errEndpoint marks a failure to find the kubelet's address.
var errEndpoint = errors.New("kubelet endpoint")

// collectStats fetches the Summary and indexes its containers by pod UID and name. It tells
// whether the kubelet answered.
func (s *containerScraper) collectStats(ctx context.Context) bool {
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
func (s *containerScraper) resolveEndpoint(ctx context.Context) (string, error) {
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

func (s *containerScraper) recordStats(st *stats.ContainerStats, memoryLimit int64) {
	if cpu := st.CPU; cpu != nil {
		ts := pcommon.NewTimestampFromTime(cpu.Time.Time)
		if cpu.UsageCoreNanoSeconds != nil {
			s.mb.RecordContainerCPUTimeDataPoint(ts, float64(*cpu.UsageCoreNanoSeconds)/1e9)
		}
		if cpu.UsageNanoCores != nil {
			s.mb.RecordContainerCPUUsageDataPoint(ts, float64(*cpu.UsageNanoCores)/1e9)
		}
	}
	mem := st.Memory
	if mem == nil {
		return
	}
	ts := pcommon.NewTimestampFromTime(mem.Time.Time)
	if mem.WorkingSetBytes != nil {
		ws := *mem.WorkingSetBytes
		s.mb.RecordContainerMemoryWorkingSetDataPoint(ts, int64(ws))
		if memoryLimit > 0 {
			s.mb.RecordK8sContainerMemoryLimitUtilizationDataPoint(ts, float64(ws)/float64(memoryLimit))
		}
	}
	if mem.UsageBytes != nil {
		s.mb.RecordContainerMemoryUsageDataPoint(ts, int64(*mem.UsageBytes))
	}
	if mem.RSSBytes != nil {
		s.mb.RecordContainerMemoryRssDataPoint(ts, int64(*mem.RSSBytes))
	}
	if mem.PageFaults != nil {
		// PageFaults counts major and minor faults together.
		major := uint64(0)
		if mem.MajorPageFaults != nil {
			major = min(*mem.MajorPageFaults, *mem.PageFaults)
			s.mb.RecordContainerMemoryPagingFaultsDataPoint(ts, int64(major), metadata.AttributeSystemPagingFaultTypeMajor)
		}
		s.mb.RecordContainerMemoryPagingFaultsDataPoint(ts, int64(*mem.PageFaults-major), metadata.AttributeSystemPagingFaultTypeMinor)
	}
}
