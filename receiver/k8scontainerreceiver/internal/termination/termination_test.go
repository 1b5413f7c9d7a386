// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package termination

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Latest returns the newest termination a container status shows.
func Latest(status *Status) (Termination, bool) {
	all, n := Visible(status)
	if n == 0 {
		return Termination{}, false
	}
	return all[n-1], true
}

func at(s string) metav1.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return metav1.NewTime(t)
}

func endedAt(reason string, exit int32, finished, id string) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{Reason: reason, ExitCode: exit, FinishedAt: at(finished), ContainerID: id}
}

func TestVisibleRealKubeletStatus(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "kubelet-v1.37.2", "memhog-oom.status.json"))
	require.NoError(t, err)
	var status corev1.PodStatus
	require.NoError(t, json.Unmarshal(b, &status))

	got, n := Visible(ptr(FromContainerStatus(&status.ContainerStatuses[0])))
	require.Equal(t, 2, n)
	// restartCount 3: the previous container ended instance 2, the current one instance 3.
	assert.Equal(t, int64(2), got[0].Instance)
	assert.Equal(t, int64(3), got[1].Instance)
	assert.True(t, got[0].OOMKilled())
	assert.True(t, got[1].OOMKilled())
	assert.Equal(t, int32(137), got[1].ExitCode)
	assert.NotEqual(t, got[0].Key(), got[1].Key())
	assert.Equal(t, "containerd://bb77a18c4820e225c4b9c0637bfe4b6216e3741aeadf8dc1c9cad004ad8d6e59", got[1].ContainerID)
}

func TestVisibleFirstKillSeenRunningAgain(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("testdata", "memhog-oom.first-kill.container-status.json"))
	require.NoError(t, err)
	var status corev1.ContainerStatus
	require.NoError(t, json.Unmarshal(b, &status))

	got, n := Visible(ptr(FromContainerStatus(&status)))
	require.Equal(t, 1, n)
	assert.Equal(t, int64(0), got[0].Instance)
	assert.True(t, got[0].OOMKilled())
}

func TestVisible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status corev1.ContainerStatus
		want   []Termination
	}{
		{
			name:   "running, never terminated",
			status: corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		},
		{
			name: "restartPolicy Never: OOM in state.terminated at restart count 0",
			status: corev1.ContainerStatus{
				State: corev1.ContainerState{Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a")},
			},
			want: []Termination{{Instance: 0, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a"}},
		},
		{
			name: "crash with Error exit 1 in lastState",
			status: corev1.ContainerStatus{
				RestartCount:         4,
				ContainerID:          "c://b",
				State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				LastTerminationState: corev1.ContainerState{Terminated: endedAt("Error", 1, "2026-01-01T00:00:05Z", "c://a")},
			},
			want: []Termination{{Instance: 3, Reason: "Error", ExitCode: 1, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a"}},
		},
		{
			name: "the kubelet's default status after the runtime lost the container: lastState may be this instance's",
			status: corev1.ContainerStatus{
				RestartCount:         4,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
				LastTerminationState: corev1.ContainerState{Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a")},
			},
			want: []Termination{{Instance: 3, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a", MaybeLater: true}},
		},
		{
			name: "the same container in both fields is one termination, attributed as the current state",
			status: corev1.ContainerStatus{
				RestartCount:         2,
				State:                corev1.ContainerState{Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a")},
				LastTerminationState: corev1.ContainerState{Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a")},
			},
			want: []Termination{{Instance: 2, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a"}},
		},
		{
			name: "back-off: the dead container's state moved to lastState, restartCount and container ID kept",
			status: corev1.ContainerStatus{
				RestartCount: 2,
				ContainerID:  "c://a",
				State:        corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{
					Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a"),
				},
			},
			want: []Termination{{Instance: 2, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a"}},
		},
		{
			name: "back-off ended by the status manager: its made-up state.terminated reports no instance",
			status: corev1.ContainerStatus{
				RestartCount: 5,
				ContainerID:  "c://a",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					Reason: "ContainerStatusUnknown", ExitCode: 137, Message: "The container could not be located when the pod was terminated",
				}},
				LastTerminationState: corev1.ContainerState{
					Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a"),
				},
			},
			want: []Termination{{Instance: 5, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a"}},
		},
		{
			name: "a running container ended by the status manager: the running instance ended, how is unknown",
			status: corev1.ContainerStatus{
				RestartCount: 5,
				ContainerID:  "c://b",
				State:        corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "ContainerStatusUnknown", ExitCode: 137}},
				LastTerminationState: corev1.ContainerState{
					Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a"),
				},
			},
			want: []Termination{
				{Instance: 4, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a"},
				{Instance: 5, Reason: "ContainerStatusUnknown", ExitCode: 137},
			},
		},
		{
			name: "waiting to start a new container after a restart: lastState ended the previous instance",
			status: corev1.ContainerStatus{
				RestartCount: 3,
				ContainerID:  "c://b",
				State:        corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
				LastTerminationState: corev1.ContainerState{
					Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", "c://a"),
				},
			},
			want: []Termination{{Instance: 2, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time, ContainerID: "c://a"}},
		},
		{
			name: "no container ID: identified by instance and end time",
			status: corev1.ContainerStatus{
				RestartCount:         1,
				LastTerminationState: corev1.ContainerState{Terminated: endedAt("ContainerStatusUnknown", 137, "2026-01-01T00:00:05Z", "")},
			},
			want: []Termination{{Instance: 0, Reason: "ContainerStatusUnknown", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:05Z").Time}},
		},
		{
			name: "lastState without restarts is clamped to instance 0, ordered by end time",
			status: corev1.ContainerStatus{
				State:                corev1.ContainerState{Terminated: endedAt("Error", 2, "2026-01-01T00:00:01Z", "c://b")},
				LastTerminationState: corev1.ContainerState{Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:09Z", "c://a")},
			},
			want: []Termination{
				{Instance: 0, Reason: "Error", ExitCode: 2, FinishedAt: at("2026-01-01T00:00:01Z").Time, ContainerID: "c://b"},
				{Instance: 0, Reason: "OOMKilled", ExitCode: 137, FinishedAt: at("2026-01-01T00:00:09Z").Time, ContainerID: "c://a"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, n := Visible(ptr(FromContainerStatus(&tt.status)))
			assert.Equal(t, tt.want, append([]Termination(nil), got[:n]...))
			latest, ok := Latest(ptr(FromContainerStatus(&tt.status)))
			assert.Equal(t, n > 0, ok)
			if ok {
				assert.Equal(t, tt.want[len(tt.want)-1], latest)
			}
		})
	}
}

// containerd marks a container OOMKilled when any process in it was OOM-killed; only an exit of
// the main process by SIGKILL says the kill ended the container (kubernetes #140718).
func TestOOMKilledOnlyWhenTheMainProcessWasKilled(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		reason            string
		exit              int32
		container, inside bool
	}{
		{"OOMKilled", 137, true, false},
		{"OOMKilled", 0, false, true},
		{"OOMKilled", 1, false, true},
		{"OOMKilled", 143, false, true},
		{"Error", 137, false, false},
		{"ContainerStatusUnknown", 137, false, false},
	} {
		term := Termination{Reason: tt.reason, ExitCode: tt.exit}
		assert.Equal(t, tt.container, term.OOMKilled(), "%s %d", tt.reason, tt.exit)
		assert.Equal(t, tt.inside, term.ProcessOOMKilled(), "%s %d", tt.reason, tt.exit)
		assert.Equal(t, tt.reason == "ContainerStatusUnknown", term.OutcomeUnknown())
	}
}

func TestKeySurvivesTheMoveToLastState(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"containerd://abc", ""} {
		current := corev1.ContainerStatus{
			RestartCount: 5,
			State:        corev1.ContainerState{Terminated: endedAt("OOMKilled", 137, "2026-01-01T00:00:05Z", id)},
		}
		restarted := corev1.ContainerStatus{
			RestartCount:         6,
			State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			LastTerminationState: current.State,
		}
		a, _ := Latest(ptr(FromContainerStatus(&current)))
		b, _ := Latest(ptr(FromContainerStatus(&restarted)))
		assert.Equal(t, a.Key(), b.Key(), "container ID %q", id)
		assert.Equal(t, a.Instance, b.Instance)
	}
}

// FuzzVisible checks, for any pair of terminations, restart count and container ID of the
// status, that each termination comes out once, oldest first, with the instance its form gives:
// state.terminated restartCount; lastState restartCount-1, or restartCount in the back-off form
// (lastState's container ID is the status'), where a made-up state.terminated (the status
// manager's ContainerStatusUnknown without ID or times) reports nothing.
func FuzzVisible(f *testing.F) {
	f.Add(int32(3), true, "OOMKilled", int64(10), "c://a", true, "OOMKilled", int64(5), "c://b", "c://a", false)
	f.Add(int32(0), true, "OOMKilled", int64(10), "", false, "", int64(0), "", "", false)
	f.Add(int32(1), true, "Error", int64(10), "c://a", true, "Error", int64(10), "c://a", "c://a", false)
	f.Add(int32(2), true, "Error", int64(10), "", true, "Error", int64(10), "", "", false)
	f.Add(int32(-1), false, "", int64(0), "", true, "OOMKilled", int64(-5), "x", "", false)
	f.Add(int32(5), false, "", int64(0), "", true, "OOMKilled", int64(5), "c://a", "c://a", false)
	f.Add(int32(5), true, "", int64(0), "", true, "OOMKilled", int64(5), "c://a", "c://a", true)
	f.Add(int32(5), true, "", int64(0), "", true, "OOMKilled", int64(5), "c://a", "c://b", true)
	f.Add(int32(0), true, "", int64(0), "", false, "", int64(0), "", "", true)
	f.Fuzz(func(t *testing.T, restarts int32, hasCur bool, curReason string, curEnd int64, curID string,
		hasLast bool, lastReason string, lastEnd int64, lastID string, statusID string, madeUp bool,
	) {
		status := Status{RestartCount: restarts, ContainerID: statusID}
		if hasCur {
			status.Current = &Ended{Reason: curReason, FinishedAt: time.Unix(curEnd, 0), ContainerID: curID}
			if madeUp {
				status.Current = &Ended{Reason: ReasonStatusUnknown, ExitCode: ExitCodeKilled}
			}
		}
		if hasLast {
			status.Last = &Ended{Reason: lastReason, FinishedAt: time.Unix(lastEnd, 0), ContainerID: lastID}
		}
		got, n := Visible(&status)

		backOff := hasLast && lastID != "" && lastID == statusID
		// A made-up end reports no instance in the back-off form, nor for a container that never
		// ran at this count (no container ID, and no lastState or one the kubelet made up).
		neverRan := statusID == "" && (!hasLast || lastID == "")
		curShown := hasCur && (!madeUp || !backOff && !neverRan)
		var cur, last Termination
		if curShown {
			cur = from(status.Current, max(int64(restarts), 0))
		}
		if hasLast {
			instance := max(int64(restarts)-1, 0)
			if backOff && !curShown {
				instance = max(int64(restarts), 0)
			}
			last = from(status.Last, instance)
		}
		want := 0
		if curShown {
			want++
		}
		if hasLast {
			want++
		}
		if curShown && hasLast && cur.Key() == last.Key() {
			want = 1
		}
		if n != want {
			t.Fatalf("%d terminations, want %d", n, want)
		}
		for i := range n {
			switch {
			case got[i].Instance < 0:
				t.Fatalf("negative instance %d", got[i].Instance)
			case curShown && got[i].Key() == cur.Key() && got[i].Instance != cur.Instance:
				t.Fatalf("state.terminated attributed to instance %d, restart count %d", got[i].Instance, restarts)
			case hasLast && got[i].Key() == last.Key() && (!curShown || got[i].Key() != cur.Key()) && got[i].Instance != last.Instance:
				t.Fatalf("lastState.terminated attributed to instance %d, want %d (restart count %d)", got[i].Instance, last.Instance, restarts)
			}
		}
		if n == 2 {
			if got[1].Before(got[0]) {
				t.Fatalf("not oldest first: %+v", got)
			}
			if got[0].Key() == got[1].Key() {
				t.Fatalf("one termination twice: %+v", got)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }
