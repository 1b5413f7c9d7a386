// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// TestRealNodeChildKilledThenPID1Exits: PID 1 of a container (restartPolicy Never) starts one
// child that the kernel OOM-kills, then exits by itself, with 0, 1 or 143, each in a pod of its
// own. containerd marks such a container OOMKilled with PID 1's own exit code (kubernetes
// #140718). One kernel kill each: the OTLP backend shows 1 in total across
// k8s.container.oom_kills and k8s.container.process.oom_kills, and one kill record, whatever the
// status says and whether or not the kubelet's counter saw the kill before the container ended.
// The record says that the victim was not the main process, and names the process the kernel
// killed (kernel_log).
func TestRealNodeChildKilledThenPID1Exits(t *testing.T) {
	s := need(t)
	ns := namespace(t, "e2e-child-exit")
	klog := followKernelLog(t)
	a := startLogsAgent(t, agentOptions{node: s.realNode, name: "child-exit", kernelLog: true})
	for _, code := range []int{0, 1, 143} {
		t.Run(fmt.Sprintf("exit %d", code), func(t *testing.T) {
			// The kernel reports this test's kill, whatever killed before on the host.
			awaitOOMReportWindow()
			name := fmt.Sprintf("child-then-exit-%d", code)
			pod := createPod(t, ns, name, s.realNode, corev1.RestartPolicyNever, nil,
				workload("app", "64Mi", map[string]string{
					"WORKLOAD_MODE": "child-oom", "WORKLOAD_CHILDREN": "1", "WORKLOAD_EXIT_CODE": strconv.Itoa(code),
				}))
			uid := string(pod.UID)
			ended := waitStatus(t, ns, name, 90*time.Second, func(p *corev1.Pod) bool {
				st, err := status(p, "app")
				return err == nil && st.State.Terminated != nil
			})
			st, err := status(ended, "app")
			require.NoError(t, err)
			term := st.State.Terminated
			t.Logf("the status says %s, exit code %d", term.Reason, term.ExitCode)
			require.Equal(t, int32(code), term.ExitCode, "PID 1 exited by itself")
			killed := klog.oomSummaries(st.ContainerID)
			require.Len(t, killed, 1, "the kernel killed one process of the container")

			// Two full scrapes after the end was visible, the backend holds what the collector
			// makes of it; one more changes nothing.
			since := time.Now()
			a.waitReports(uid, "app", since, 3)
			match := map[string]string{"k8s.pod.uid": uid, "k8s.container.name": "app"}
			containerKills, ok := a.latestOf("k8s.container.oom_kills", uid, "app")
			require.True(t, ok, "no k8s.container.oom_kills for the container")
			processKills, ok := a.latestOf("k8s.container.process.oom_kills", uid, "app")
			require.True(t, ok, "no k8s.container.process.oom_kills for the container")
			t.Logf("k8s.container.oom_kills %v, k8s.container.process.oom_kills %v", containerKills.Value, processKills.Value)
			assert.Equal(t, float64(1), containerKills.Value+processKills.Value, "one kernel kill, counted once across both counters")
			if term.Reason == "OOMKilled" {
				assert.Zero(t, containerKills.Value, "OOMKilled with exit code %d: PID 1 was not killed", code)
			}

			records := len(a.sink.Records("k8s.container.oom_kill", match))
			for _, r := range a.sink.Records("k8s.container.process.oom_kill", match) {
				t.Logf("process kill record: %v", r.Attrs)
				records += int(intAttr(t, r, "k8s.container.process.oom_kill.count"))
				assert.Equal(t, "false", r.Attrs["k8s.oom.main_process"], "the victim was not PID 1")
				assert.Equal(t, "found", r.Attrs["k8s.oom.kernel_report"])
				assert.Equal(t, strconv.Itoa(killed[0].Pid), r.Attrs["process.pid"], "the process the kernel killed")
				assert.Equal(t, killed[0].Comm, r.Attrs["process.executable.name"])
			}
			assert.Equal(t, 1, records, "one kill record")
		})
	}
}
