// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/oomwatch/oomwatch/deploy"
)

// The receiver's reader of the kernel's per-container OOM kill count
// (receiver/k8scontainerreceiver/internal/cgroupoom) on the real node. This package may not
// import it (it is internal to the receiver), so the test builds that package's test binary
// and runs its TestHostRead, which reads the instances it is given and prints what it read.

// cgroupReaderPkg is the reader's package, relative to the module.
const cgroupReaderPkg = "./internal/cgroupoom"

// cgroupInstance and cgroupRead mirror the reader's Instance and TestHostRead's result.
type cgroupInstance struct {
	PodUID, Container, ContainerID string
}

type cgroupRead struct {
	UID                   int
	CounterFile           string
	Kubepods              []string
	First, Second         map[string]uint64
	FirstErr, SecondErr   string
	FirstSearches         int
	SecondSearches        int
	FirstTook, SecondTook time.Duration
}

// buildCgroupReader builds the reader's test binary in a folder every user can read.
func buildCgroupReader(t *testing.T) string {
	t.Helper()
	// The reader is a package of the receiver's module, built in that module.
	module, err := filepath.Abs(filepath.Join("..", "..", "..", "receiver", "k8scontainerreceiver"))
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "oomwatch-cgroupoom-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "cgroupoom.test")
	cmd := exec.Command("go", "test", "-c", "-o", bin, cgroupReaderPkg)
	cmd.Dir = module
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building %s: %s", cgroupReaderPkg, out)
	require.NoError(t, os.Chmod(bin, 0o755))
	return bin
}

// agentUser is the user the collector runs as: runAsUser of deploy/daemonset.yaml.
func agentUser(t *testing.T) uint32 {
	t.Helper()
	manifest, err := deploy.Manifests.ReadFile("daemonset.yaml")
	require.NoError(t, err)
	var ds appsv1.DaemonSet
	require.NoError(t, yaml.Unmarshal(manifest, &ds))
	c := ds.Spec.Template.Spec.Containers[0]
	require.NotNil(t, c.SecurityContext)
	require.NotNil(t, c.SecurityContext.RunAsUser)
	return uint32(*c.SecurityContext.RunAsUser)
}

// readCgroups runs the reader's TestHostRead as user uid (and group uid) on the host's
// /sys/fs/cgroup.
func readCgroups(t *testing.T, bin string, uid uint32, instances ...cgroupInstance) cgroupRead {
	t.Helper()
	js, err := json.Marshal(instances)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^TestHostRead$", "-test.count", "1", "-test.v")
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = []string{"OOMWATCH_CGROUPOOM_ROOT=/sys/fs/cgroup", "OOMWATCH_CGROUPOOM_INSTANCES=" + string(js)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "reader as user %d:\n%s%s", uid, stdout.String(), stderr.String())
	const prefix = "cgroupoom host read: "
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if js, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			var res cgroupRead
			require.NoError(t, json.Unmarshal([]byte(js), &res))
			return res
		}
	}
	t.Fatalf("the reader printed no %q line:\n%s", prefix, stdout.String())
	return cgroupRead{}
}

// TestRealNodeCgroupReaderMatchesKernel: children of a container are OOM-killed faster than
// the kernel reports OOM kills (as in TestRealNodeRateLimitedOOMReportsUndercountInCadvisor).
// The receiver's cgroup reader, run as the collector's non-root user on the host's
// /sys/fs/cgroup, finds the container's cgroup and reads exactly the kernel's count, every
// kill, where the kubelet's container_oom_events_total falls short; a second read finds the
// cgroups in its cache. An instance whose cgroup is not there is left out.
//
// What the kubelet and containerd make below the kubelet's cgroup root is open to every user
// (folders 0755, memory.oom_control 0644), and so is that root, as on a node (the local cluster
// makes it 0755, as the kubelet and systemd make theirs).
func TestRealNodeCgroupReaderMatchesKernel(t *testing.T) {
	s := need(t)
	bin := buildCgroupReader(t) // before the kills: the build takes both cores for a while
	agent := agentUser(t)
	ns := namespace(t, "e2e-cgroupoom")
	const children = 16
	r := childKills(t, ns, children, "16Mi", map[string]string{"WORKLOAD_INTERVAL": "1ms"}, 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, err := s.admin.CoreV1().Pods(ns).Get(ctx, "children", metav1.GetOptions{})
	require.NoError(t, err)
	st, err := status(pod, "app")
	require.NoError(t, err)
	podUID, id := string(pod.UID), bareContainerID(st.ContainerID)
	instances := []cgroupInstance{
		{PodUID: podUID, Container: "app", ContainerID: id},
		{PodUID: podUID, Container: "absent", ContainerID: strings.Repeat("0", 64)},
	}

	// Who may reach the container's cgroup: the modes from the kubelet's cgroup root down.
	cgroupRoot := filepath.Join(memoryCgroupMount, s.cluster.Options().CgroupRoot)
	dir, err := containerMemoryCgroup(podUID, st.ContainerID)
	require.NoError(t, err)
	var modes []string
	for p := filepath.Join(dir, "memory.oom_control"); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		modes = append([]string{fmt.Sprintf("%s %s", fi.Mode().Perm(), strings.TrimPrefix(p, memoryCgroupMount))}, modes...)
		if p == cgroupRoot {
			break
		}
	}
	t.Logf("modes: %s", strings.Join(modes, ", "))
	rootInfo, err := os.Stat(cgroupRoot)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o005), rootInfo.Mode().Perm()&0o005, "the cluster's cgroup root %s is open to others, as a node's kubepods cgroup is", cgroupRoot)

	read := readCgroups(t, bin, agent, instances...)
	kernel := kernelOOMKills(t, podUID, st.ContainerID)
	t.Logf("%d children OOM-killed: kernel oom_kill %d, cgroup reader %d (as user %d, %s of the kubepods cgroup %v), cadvisor %d; "+
		"reader's first read %d searches in %s, second %d searches in %s",
		children, kernel, read.First[id], read.UID, read.CounterFile, read.Kubepods, r.cadvisor,
		read.FirstSearches, read.FirstTook, read.SecondSearches, read.SecondTook)

	require.Equal(t, uint64(children), kernel, "every child OOM-killed, PID 1 never")
	assert.Equal(t, r.kernel, kernel, "the kernel's count moved after the kills had settled")
	assert.Equal(t, int(agent), read.UID, "the reader ran as the collector's user")
	assert.Equal(t, "memory.oom_control", read.CounterFile, "the node runs on a cgroup v1 host")
	assert.Equal(t, []string{filepath.Join(cgroupRoot, "kubepods")}, read.Kubepods)
	assert.Empty(t, read.FirstErr)
	assert.Empty(t, read.SecondErr)
	assert.Equal(t, map[string]uint64{id: kernel}, read.First, "the reader reads the kernel's count, and leaves out the absent instance")
	assert.Equal(t, read.First, read.Second)
	assert.Positive(t, read.FirstSearches)
	// The instance found is in the cache; the absent one costs one listing of its pod's cgroup
	// (cached too) on every read.
	assert.Equal(t, 1, read.SecondSearches, "the second read found the cgroups in its cache")
	assert.Less(t, r.cadvisor, read.First[id], "cadvisor misses the kills the kernel did not report")
}
