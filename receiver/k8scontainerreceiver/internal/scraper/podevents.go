// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/containerstate"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/oomscope"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/podevents"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/trajectory"
)

// With pod_events, each kill the receiver reports is also a Kubernetes Event on its pod, whose
// message explains it in one line: `kubectl describe pod` then shows it.

// podEventDone counts and logs an Event that was not written.
func (s *Scraper) podEventDone(k podevents.Kill, outcome podevents.Outcome, err error) {
	if outcome != podevents.Failed && outcome != podevents.Dropped {
		return
	}
	s.telemetry.K8sContainerPodEventErrors.Add(context.Background(), 1)
	s.logger.Warn("Writing an OOM kill's Event on its pod failed",
		zap.String("namespace", k.Namespace), zap.String("pod", k.Pod), zap.String("container", k.Container), zap.Error(err))
}

// addPodEvent queues the Event of a kill of container c, with pod_events; id tells the kill from
// the container's others.
func (s *Scraper) addPodEvent(p *containerstate.Pod, c *containerstate.Container, id string, at time.Time, message string) {
	if s.podEvents == nil {
		return
	}
	s.podEvents.Add(podevents.Kill{
		Namespace: p.Namespace, Pod: p.Name, PodUID: p.UID, Container: c.Name, ID: id, At: at, Message: message,
	})
}

// killID tells a kill of a container from its other kills: the ID of the instance it ended, or
// its restart index when the status gives no ID.
func killID(k termination.Termination) string {
	if id := runtimeID(k.ContainerID); id != "" {
		return id
	}
	return "instance-" + strconv.FormatInt(k.Instance, 10)
}

// scopePhrase says which limit a kill hit.
func scopePhrase(c *containerstate.Container, scope oomscope.Scope, ok bool) string {
	if !ok {
		return "which limit was reached is not known"
	}
	switch scope {
	case oomscope.Container:
		if c.MemoryLimit > 0 {
			return "the container reached its own memory limit (" + mebibytes(c.MemoryLimit) + ")"
		}
		return "the container reached its own memory limit"
	case oomscope.Pod:
		return "the pod reached its memory limit (pod-level resources)"
	case oomscope.NodeAllocatable:
		return "the node's allocatable memory for pods ran out"
	default:
		return "the node ran out of memory"
	}
}

// containerKillMessage explains a container's kill in one line.
func containerKillMessage(c *containerstate.Container, k termination.Termination, scope oomscope.Scope, scopeOK bool, tr trajectory.Trajectory, trOK bool) string {
	msg := fmt.Sprintf("Container %s OOM-killed (restart %d, exit code %d): %s", c.Name, k.Instance, k.ExitCode, scopePhrase(c, scope, scopeOK))
	if !trOK {
		return msg + "."
	}
	msg += "; working set peaked at " + mebibytes(tr.Peak)
	switch tr.Class {
	case trajectory.SlowGrowth:
		msg += ", growing slowly"
	case trajectory.Spike:
		msg += ", rising faster than it was read"
	case trajectory.SteadyAtLimit:
		msg += ", running at its limit"
	}
	if tr.GrowthRateKnown {
		msg += fmt.Sprintf(" (%s/s)", mebibytes(int64(tr.GrowthRate)))
	}
	if tr.From80Known {
		msg += fmt.Sprintf(", %.0f s from 80 %% of the limit to the kill", tr.From80.Seconds())
	}
	return msg + "."
}

// processKillMessage explains in one line the kills of processes other than the main one (PID
// 1), whether the container lives on or its main process then exited by itself.
func processKillMessage(c *containerstate.Container, n int64, scope oomscope.Scope, scopeOK bool) string {
	processes := "processes"
	if n == 1 {
		processes = "process"
	}
	return fmt.Sprintf("%d %s of container %s OOM-killed, not its main process: %s.", n, processes, c.Name, scopePhrase(c, scope, scopeOK))
}

// mebibytes writes bytes in MiB, to a tenth.
func mebibytes(b int64) string {
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB"
}

// victimPhrase names the process the kernel killed, when its report was read.
func victimPhrase(v victim, report string) string {
	switch report {
	case kernelReportFound:
		return fmt.Sprintf(" The kernel killed %s (PID %d).", v.process, v.pid)
	case kernelReportSuppressed:
		return " The kernel's report of the victim was rate-limited away."
	default:
		return ""
	}
}
