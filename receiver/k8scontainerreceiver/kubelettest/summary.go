// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package kubelettest

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Usage is what a container used, in the Summary API's units.
type Usage struct {
	CPUNanoSeconds  uint64
	NanoCores       uint64
	WorkingSet      uint64
	Usage           uint64
	RSS             uint64
	PageFaults      uint64
	MajorPageFaults uint64
}

// Container returns the stats of a container started at start and sampled at at.
func Container(name string, start, at time.Time, u Usage) stats.ContainerStats {
	sample := metav1.NewTime(at)
	return stats.ContainerStats{
		Name:      name,
		StartTime: metav1.NewTime(start),
		CPU: &stats.CPUStats{
			Time:                 sample,
			UsageNanoCores:       &u.NanoCores,
			UsageCoreNanoSeconds: &u.CPUNanoSeconds,
		},
		Memory: &stats.MemoryStats{
			Time:            sample,
			UsageBytes:      &u.Usage,
			WorkingSetBytes: &u.WorkingSet,
			RSSBytes:        &u.RSS,
			PageFaults:      &u.PageFaults,
			MajorPageFaults: &u.MajorPageFaults,
		},
	}
}

// Pod returns the stats of a pod with its containers.
func Pod(namespace, name, uid string, start time.Time, containers ...stats.ContainerStats) stats.PodStats {
	return stats.PodStats{
		PodRef:     stats.PodReference{Name: name, Namespace: namespace, UID: uid},
		StartTime:  metav1.NewTime(start),
		Containers: containers,
	}
}

// Summary returns a node's Summary with pods.
func Summary(node string, pods ...stats.PodStats) *stats.Summary {
	return &stats.Summary{Node: stats.NodeStats{NodeName: node}, Pods: pods}
}
