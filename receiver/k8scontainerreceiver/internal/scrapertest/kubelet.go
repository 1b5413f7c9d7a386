// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scrapertest

import (
	"fmt"
	"strings"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podtest"
)

// What the kubelet test server answers on /metrics/cadvisor.

// PodUID is a pod UID as the kubelet's cgroup paths hold it.
const PodUID = "49209e91-9438-4ff8-8fe7-8d4163da3a5d"

// CadvisorCounter is one container instance's container_oom_events_total.
type CadvisorCounter struct {
	Pod, UID, Container, ID string
	Value                   int
}

// Cadvisor is /metrics/cadvisor as a kubelet writes it, with the pod-level and sandbox cgroups
// it also lists.
func Cadvisor(counters ...CadvisorCounter) string {
	var b strings.Builder
	b.WriteString("# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n# TYPE container_cpu_usage_seconds_total counter\n")
	b.WriteString("container_cpu_usage_seconds_total{container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 12.5 1795728467449\n")
	b.WriteString("# HELP container_oom_events_total Count of out of memory events observed for the container\n# TYPE container_oom_events_total counter\n")
	for _, c := range counters {
		pod := "/kubepods/burstable/pod" + c.UID
		fmt.Fprintf(&b, "container_oom_events_total{container=\"\",id=%q,image=\"\",name=\"\",namespace=%q,pod=%q} 0 1795728467449\n", pod, podtest.Namespace, c.Pod)
		fmt.Fprintf(&b, "container_oom_events_total{container=%q,id=%q,image=\"memhog:v1\",name=%q,namespace=%q,pod=%q} %d 1795728467449\n",
			c.Container, pod+"/"+c.ID, c.ID, podtest.Namespace, c.Pod, c.Value)
	}
	return b.String()
}
