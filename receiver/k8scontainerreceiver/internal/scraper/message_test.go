// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/oomscope"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
)

// The one-line explanations of pod Events, as `kubectl describe pod` shows them.
func TestKillMessages(t *testing.T) {
	c := &containerstate.Container{Name: "app", MemoryLimit: 64 << 20}
	k := termination.Termination{Instance: 2, ExitCode: 137}
	tr := trajectory.Trajectory{Peak: 60 << 20, GrowthRate: 128 << 10, GrowthRateKnown: true, From80: 85 * time.Second, From80Known: true, Class: trajectory.SlowGrowth}
	assert.Equal(t,
		"Container app OOM-killed (restart 2, exit code 137): the container reached its own memory limit (64.0 MiB); working set peaked at 60.0 MiB, growing slowly (0.1 MiB/s), 85 s from 80 % of the limit to the kill.",
		containerKillMessage(c, k, oomscope.Container, true, tr, true))
	assert.Equal(t,
		"Container app OOM-killed (restart 2, exit code 137): the pod reached its memory limit (pod-level resources).",
		containerKillMessage(c, k, oomscope.Pod, true, tr, false))
	assert.Equal(t,
		"1 process of container app OOM-killed, not its main process: the node's allocatable memory for pods ran out.",
		processKillMessage(c, 1, oomscope.NodeAllocatable, true))
	assert.Equal(t,
		"3 processes of container app OOM-killed, not its main process: which limit was reached is not known. The kernel killed worker (PID 4242).",
		processKillMessage(c, 3, "", false)+victimPhrase(victim{pid: 4242, process: "worker"}, kernelReportFound))
	assert.Equal(t, " The kernel's report of the victim was rate-limited away.", victimPhrase(victim{}, kernelReportSuppressed))
	assert.Empty(t, victimPhrase(victim{}, kernelReportNotFound))
}
