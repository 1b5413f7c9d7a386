// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package cgroupoom

// The kernel-level test: real OOM kills in a cgroup v2 kernel (a QEMU guest, v2vm), in
// container cgroups laid out as the kubelet lays them out with the cgroupfs and the systemd
// drivers, and what the Reader reads of them. The test binary itself, built static, is the
// guest's program: run with guestArg and a role, it is the guest's coordinator, an allocator,
// a sleeper or a container's PID 1 (see guestMain).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/processkill"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/testing/v2vm"
)

const (
	// guestArg, first on the command line, makes the test binary a program of the guest.
	guestArg = "-v2kernel-guest"
	// reportPrefix starts the line of the coordinator's JSON report.
	reportPrefix = "v2kernel-report "

	// guestLimit is each container's memory.max; the allocator takes allocStep every
	// allocEvery, touching every page, until it is killed.
	guestLimit = 32 << 20
	allocStep  = 4 << 20
	allocEvery = 50 * time.Millisecond
	// allocCap ends an allocator the limit did not stop.
	allocCap = 1 << 30
	// guestWait bounds each wait of the coordinator for the kernel.
	guestWait = 60 * time.Second
)

func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == guestArg {
		os.Exit(guestMain(os.Args[2]))
	}
	os.Exit(m.Run())
}

// The coordinator's report.
type v2Report struct {
	Kernel string   `json:"kernel"`
	Cases  []v2Case `json:"cases"`
}

type v2Case struct {
	Layout      string `json:"layout"` // cgroupfs or systemd
	Name        string `json:"name"`   // restart, pid1 or group
	PodUID      string `json:"podUID"`
	ContainerID string `json:"containerID"`
	Cgroup      string `json:"cgroup"`
	OOMGroup    int    `json:"oomGroup"`

	// The container cgroup's files after the kills, before anything is removed.
	Events      map[string]uint64 `json:"events"`
	EventsLocal map[string]uint64 `json:"eventsLocal,omitempty"`
	// The pod cgroup's (the container's parent).
	PodEvents      map[string]uint64 `json:"podEvents"`
	PodEventsLocal map[string]uint64 `json:"podEventsLocal,omitempty"`
	Pressure       string            `json:"pressure,omitempty"`
	Peak           string            `json:"peak,omitempty"`
	SwapMax        string            `json:"swapMax,omitempty"`

	Processes []v2Process `json:"processes"`
	// ProcsAfter is the container's cgroup.procs after the kills.
	ProcsAfter []int `json:"procsAfter"`
	// KernelLog are the kernel's lines about OOM kills while the case ran; KilledLines counts
	// its "Killed process" lines.
	KernelLog   []string `json:"kernelLog"`
	KilledLines int      `json:"killedLines"`

	// What the Reader read: before any kill, after the kills, after the container's cgroup was
	// removed (Found false: left out of the map).
	ReaderBefore  v2Read `json:"readerBefore"`
	ReaderAfter   v2Read `json:"readerAfter"`
	ReaderRemoved v2Read `json:"readerRemoved"`

	Errors []string `json:"errors,omitempty"`
}

// fail records an error of the guest's.
func (c *v2Case) fail(format string, args ...any) {
	c.Errors = append(c.Errors, fmt.Sprintf(format, args...))
}

type v2Process struct {
	Role string `json:"role"` // alloc, sleep or pid1; "child alloc" for PID 1's child
	PID  int    `json:"pid"`
	// Exit is how it ended ("signal: killed"), "" when it was running after the kills.
	Exit string `json:"exit"`
	// Survived: still running after the kills (then ended by the coordinator).
	Survived bool `json:"survived"`
}

type v2Read struct {
	Value      uint64 `json:"value"`
	GroupKills uint64 `json:"groupKills"`
	Found      bool   `json:"found"`
	Err        string `json:"err,omitempty"`
}

// TestV2KernelOOMKills boots the guest once and checks what the kernel and the Reader did in
// each case, for both kubelet layouts:
//   - restart (memory.oom.group 0): one allocator, killed three times, started again each time;
//   - pid1 (memory.oom.group 0): a PID 1 in a PID namespace of its own and its child allocator;
//     the child is killed, PID 1 lives;
//   - group (memory.oom.group 1): an allocator and three sleepers; one OOM kills all four.
func TestV2KernelOOMKills(t *testing.T) {
	v2vm.Require(t)
	start := time.Now()
	bin := buildStaticTestBinary(t)
	built := time.Since(start)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start = time.Now()
	out, err := v2vm.VM{Timeout: 4 * time.Minute}.Run(ctx, bin, guestArg, "coordinator")
	t.Logf("static test binary built in %s; guest ran in %s", built.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	require.NoError(t, err, "the guest's output:\n%s", out)
	var report v2Report
	found := false
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, reportPrefix); ok {
			require.NoError(t, json.Unmarshal([]byte(rest), &report))
			found = true
		}
	}
	require.True(t, found, "no report in the guest's output:\n%s", out)
	t.Logf("guest kernel %s", report.Kernel)

	byName := map[string]map[string]v2Case{}
	for _, c := range report.Cases {
		t.Logf("%s/%s: memory.events %v, .local %v; the pod's %v, .local %v; processes %+v; left %v; Reader %+v, %+v, removed %+v; killed PIDs in the kernel log %v; memory.peak %s, memory.swap.max %s, memory.pressure %q",
			c.Layout, c.Name, c.Events, c.EventsLocal, c.PodEvents, c.PodEventsLocal, c.Processes, c.ProcsAfter,
			c.ReaderBefore, c.ReaderAfter, c.ReaderRemoved, killedPIDs(c.KernelLog), c.Peak, c.SwapMax, c.Pressure)
		assert.Empty(t, c.Errors, "%s/%s", c.Layout, c.Name)
		if byName[c.Layout] == nil {
			byName[c.Layout] = map[string]v2Case{}
		}
		byName[c.Layout][c.Name] = c
	}
	for _, layout := range []string{"cgroupfs", "systemd"} {
		for _, name := range []string{"restart", "pid1", "group"} {
			t.Run(layout+"/"+name, func(t *testing.T) {
				c, ok := byName[layout][name]
				require.True(t, ok, "no case %s/%s in the report", layout, name)
				checkV2Case(t, c)
			})
		}
	}
}

// killedPIDs are the PIDs of the kernel's "Killed process <PID>" lines.
func killedPIDs(log []string) []int {
	var pids []int
	for _, l := range log {
		if _, rest, ok := strings.Cut(l, "Killed process "); ok {
			f, _, _ := strings.Cut(rest, " ")
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// checkV2Case holds a case to what the kernel was seen to do.
func checkV2Case(t *testing.T, c v2Case) {
	defer func() {
		if t.Failed() {
			t.Logf("the kernel's log:\n%s", strings.Join(c.KernelLog, "\n"))
		}
	}()
	ev := c.Events
	for _, k := range []string{"low", "high", "max", "oom", "oom_kill", "oom_group_kill"} {
		assert.Contains(t, ev, k, "memory.events")
	}
	assert.Zero(t, ev["low"])
	assert.Zero(t, ev["high"])
	assert.Positive(t, ev["max"], "the limit was hit")

	// The Reader reads memory.events' oom_kill: 0 before, the kernel's count after, and the
	// instance is left out once its cgroup is gone.
	assert.Equal(t, v2Read{Value: 0, Found: true}, c.ReaderBefore, "the Reader before the kills")
	assert.Equal(t, v2Read{Value: ev["oom_kill"], GroupKills: ev["oom_group_kill"], Found: true}, c.ReaderAfter, "the Reader after the kills")
	assert.Equal(t, v2Read{}, c.ReaderRemoved, "the Reader after the container's cgroup was removed")

	// What the receiver makes of these readings (internal/processkill): kills of one process at
	// a time inside the living cgroup are process kills, each once; a group kill ended the
	// container, a container OOM kill its status shows, and is no process kill.
	pk := processkill.New()
	reading := func(r v2Read) []kubelet.OOMCounter {
		return []kubelet.OOMCounter{{PodUID: "pod", Container: "c", ContainerID: "instance", Value: r.Value, GroupKills: r.GroupKills}}
	}
	pk.Read(reading(c.ReaderBefore), 0, true, nil)
	pk.Read(reading(c.ReaderAfter), 1, true, nil)
	processKills := pk.Take("pod", "c").N

	// The container has no cgroups below it: its local events are its events. The pod's
	// memory.events counts its container's kills; its memory.events.local, none.
	if c.EventsLocal != nil {
		assert.Equal(t, ev, c.EventsLocal, "memory.events.local of a cgroup without descendants")
	}
	assert.Equal(t, ev["oom_kill"], c.PodEvents["oom_kill"], "the pod's memory.events counts its container's kills")
	assert.Equal(t, ev["oom_group_kill"], c.PodEvents["oom_group_kill"], "the pod's memory.events counts its container's group kills")
	if c.PodEventsLocal != nil {
		assert.Zero(t, c.PodEventsLocal["oom_kill"], "the pod's memory.events.local counts no kill of a container's")
	}

	killed := func(p v2Process) bool { return p.Exit == "signal: killed" }
	switch c.Name {
	case "restart":
		require.Len(t, c.Processes, 3)
		for _, p := range c.Processes {
			assert.True(t, killed(p), "allocator %+v is killed", p)
		}
		assert.Equal(t, uint64(3), ev["oom_kill"], "one kill per run of the allocator")
		assert.Equal(t, int64(3), processKills, "three process kills")
		// Each kill comes of an OOM; the kernel may find the cgroup out of memory once more while
		// a victim exits, and kill nothing then (one run of many: oom 4).
		assert.GreaterOrEqual(t, ev["oom"], uint64(3))
		assert.Zero(t, ev["oom_group_kill"])
		assert.Equal(t, 3, c.KilledLines)
		assert.Empty(t, c.ProcsAfter)
	case "pid1":
		require.Len(t, c.Processes, 2)
		pid1, child := c.Processes[0], c.Processes[1]
		assert.True(t, pid1.Survived, "PID 1 lives on after its child's kill: %+v", pid1)
		assert.True(t, killed(child), "the child allocator is killed: %+v", child)
		assert.Equal(t, []int{pid1.PID}, c.ProcsAfter, "PID 1 alone is left in the container")
		assert.Equal(t, int64(1), processKills, "the child's kill is one process kill")
		assert.Equal(t, uint64(1), ev["oom_kill"])
		// As in "restart": the cgroup may be out of memory once more while the child exits, with
		// nothing killed then (one run of many: oom 2).
		assert.GreaterOrEqual(t, ev["oom"], uint64(1))
		assert.Zero(t, ev["oom_group_kill"])
		assert.Equal(t, 1, c.KilledLines)
	case "group":
		require.Len(t, c.Processes, 4)
		assert.Zero(t, processKills, "a group kill is no process kill")
		// cAdvisor, which the kubelet source reads, counts the kernel log's OOM reports: one
		// per OOM, however many processes the group kill ended.
		reports := 0
		for _, l := range c.KernelLog {
			if strings.Contains(l, "oom-kill:constraint=") {
				reports++
			}
		}
		for _, p := range c.Processes {
			assert.True(t, killed(p), "%+v is killed with its group", p)
			assert.False(t, p.Survived)
		}
		assert.Empty(t, c.ProcsAfter, "every process is gone")
		// Usually one OOM and one group kill. On a loaded host the kernel may run out again
		// before the first kill freed the memory, and kill the group again: each OOM is a group
		// kill and one report in the log.
		assert.GreaterOrEqual(t, ev["oom_group_kill"], uint64(1), "a group kill")
		assert.Equal(t, ev["oom_group_kill"], ev["oom"], "each OOM killed the group")
		assert.Equal(t, int(ev["oom"]), reports, "OOM reports of the group kills in the kernel log")
		// Every process of the group counts, and some more than once: on 6.1 the group kill
		// goes through the cgroup's threads, not its processes, and kills (and counts) the
		// process of each thread whose process still has its memory. The victim chosen first,
		// already killed, is killed and counted again, and so is any process whose threads
		// outlive its first kill a while (the kernel log then names one of its threads, not
		// its PID): 5 to 8 were seen for these 4 processes, from one run to the next, 8 when
		// each was counted twice.
		assert.GreaterOrEqual(t, ev["oom_kill"], uint64(len(c.Processes)), "every process of the group counts")
		assert.Equal(t, ev["oom_kill"], uint64(c.KilledLines), "one count per Killed process line")
	}
}

// buildStaticTestBinary builds this package's tests without cgo (and so without the race
// detector) into a folder of the test's, which the guest sees under /host.
func buildStaticTestBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build the guest's program: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cgroupoom.test")
	cmd := exec.Command(gobin, "test", "-c", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building the guest's program: %s", out)
	return bin
}

// guestMain is the test binary in the guest, in one of its roles.
func guestMain(role string) int {
	switch role {
	case "coordinator":
		return guestCoordinator()
	case "alloc":
		return guestAlloc()
	case "sleep":
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case "pid1":
		return guestPID1()
	}
	fmt.Fprintf(os.Stderr, "unknown guest role %q\n", role)
	return 2
}

// guestAlloc takes allocStep of anonymous memory every allocEvery and touches every page.
func guestAlloc() int {
	page := os.Getpagesize()
	for total := 0; total < allocCap; total += allocStep {
		b, err := syscall.Mmap(-1, 0, allocStep, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mmap: %v\n", err)
			return 1
		}
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		time.Sleep(allocEvery)
	}
	fmt.Fprintf(os.Stderr, "allocated %d bytes and was not killed\n", allocCap)
	return 3
}

// guestPID1 is a container's PID 1: it starts an allocator, says on its standard output how
// it ended, and sleeps.
func guestPID1() int {
	cmd := exec.Command(os.Args[0], guestArg, "alloc")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Printf("start %v\n", err)
		return 1
	}
	fmt.Printf("child %d\n", cmd.Process.Pid)
	err := cmd.Wait()
	fmt.Printf("ended %s\n", exitString(cmd.ProcessState, err))
	for {
		time.Sleep(time.Hour)
	}
}

func exitString(st *os.ProcessState, err error) string {
	if st != nil {
		return st.String()
	}
	return err.Error()
}

// guestCoordinator runs the cases and prints the report.
func guestCoordinator() int {
	report := v2Report{}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		report.Kernel = strings.TrimSpace(string(b))
	}
	r, err := NewReader("/sys/fs/cgroup")
	if err != nil {
		fmt.Fprintf(os.Stderr, "NewReader: %v\n", err)
		return 1
	}
	// Both kubepods cgroups are there before the Reader first looks, as a kubelet's would be.
	for _, layout := range []string{"cgroupfs", "systemd"} {
		if _, err := podCgroupDir(layout, "00000000-0000-0000-0000-000000000000"); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", layout, err)
			return 1
		}
	}
	n := 0
	for _, layout := range []string{"cgroupfs", "systemd"} {
		for _, name := range []string{"restart", "pid1", "group"} {
			n++
			c := v2Case{
				Layout:      layout,
				Name:        name,
				PodUID:      fmt.Sprintf("3f2a9c1e-5b7d-4e8f-9a0b-%012d", n),
				ContainerID: fmt.Sprintf("%064x", 0xc0ffee00+n),
			}
			runV2Case(r, &c)
			report.Cases = append(report.Cases, c)
		}
	}
	b, err := json.Marshal(report)
	if err != nil {
		fmt.Fprintf(os.Stderr, "report: %v\n", err)
		return 1
	}
	fmt.Printf("%s%s\n", reportPrefix, b)
	return 0
}

// podCgroupDir makes the pod cgroup of a Burstable pod as the kubelet does with each driver,
// with memory and pids enabled down to it, and returns it.
func podCgroupDir(layout, uid string) (string, error) {
	var parts []string
	switch layout {
	case "cgroupfs":
		parts = []string{"kubepods", "burstable", "pod" + uid}
	case "systemd":
		parts = []string{"kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"}
	}
	dir := "/sys/fs/cgroup"
	for _, p := range parts {
		dir += "/" + p
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", err
		}
		if err := os.WriteFile(dir+"/cgroup.subtree_control", []byte("+memory +pids"), 0o644); err != nil {
			return "", fmt.Errorf("%s: %w", dir, err)
		}
	}
	return dir, nil
}

// runV2Case makes the container's cgroup, kills in it and records what the kernel and the
// Reader say. Errors are recorded in the case.
func runV2Case(r *Reader, c *v2Case) {
	podDir, err := podCgroupDir(c.Layout, c.PodUID)
	if err != nil {
		c.fail("pod cgroup: %v", err)
		return
	}
	name := c.ContainerID
	if c.Layout == "systemd" {
		name = "cri-containerd-" + c.ContainerID + ".scope"
	}
	c.Cgroup = podDir + "/" + name
	if err := os.Mkdir(c.Cgroup, 0o755); err != nil {
		c.fail("container cgroup: %v", err)
		return
	}
	if c.Name == "group" {
		c.OOMGroup = 1
	}
	settings := [][2]string{{"memory.max", strconv.Itoa(guestLimit)}, {"memory.oom.group", strconv.Itoa(c.OOMGroup)}}
	if _, err := os.Stat(c.Cgroup + "/memory.swap.max"); err == nil {
		settings = append(settings, [2]string{"memory.swap.max", "0"})
	}
	for _, s := range settings {
		if err := os.WriteFile(c.Cgroup+"/"+s[0], []byte(s[1]), 0o644); err != nil {
			c.fail("%s: %v", s[0], err)
			return
		}
	}
	cgroupFD, err := syscall.Open(c.Cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		c.fail("open the cgroup: %v", err)
		return
	}
	defer func() { _ = syscall.Close(cgroupFD) }()
	instance := []Instance{{PodUID: c.PodUID, ContainerID: c.ContainerID}}
	c.ReaderBefore = readOne(r, instance)
	kmsg := openKmsg()

	switch c.Name {
	case "restart":
		runRestart(c, cgroupFD)
	case "pid1":
		runPID1(c, cgroupFD)
	case "group":
		runGroup(c, cgroupFD)
	}

	c.KernelLog, c.KilledLines = readKmsg(kmsg)
	c.Events = readKeyed(c.Cgroup + "/memory.events")
	c.EventsLocal = readKeyed(c.Cgroup + "/memory.events.local")
	c.PodEvents = readKeyed(podDir + "/memory.events")
	c.PodEventsLocal = readKeyed(podDir + "/memory.events.local")
	c.Pressure = readTrimmed(c.Cgroup + "/memory.pressure")
	c.Peak = readTrimmed(c.Cgroup + "/memory.peak")
	c.SwapMax = readTrimmed(c.Cgroup + "/memory.swap.max")
	c.ReaderAfter = readOne(r, instance)

	if !waitFor(func() bool { return len(procs(c.Cgroup)) == 0 }, guestWait) {
		c.fail("processes left in %s: %v", c.Cgroup, procs(c.Cgroup))
	}
	if err := os.Remove(c.Cgroup); err != nil {
		c.fail("rmdir: %v", err)
	}
	c.ReaderRemoved = readOne(r, instance)
}

// runRestart: one allocator at a time, started again after each kill, three times.
func runRestart(c *v2Case, cgroupFD int) {
	for range 3 {
		p, cmd, err := startInCgroup(cgroupFD, "alloc", false, nil)
		if err != nil {
			c.fail("start: %v", err)
			return
		}
		p.Exit = waitExit(cmd, guestWait)
		c.Processes = append(c.Processes, *p)
	}
	c.ProcsAfter = procs(c.Cgroup)
}

// runPID1: a PID 1 in a PID namespace of its own, whose child allocator is killed; PID 1,
// still running after the kill, is then ended by the coordinator.
func runPID1(c *v2Case, cgroupFD int) {
	pr, pw, err := os.Pipe()
	if err != nil {
		c.fail("pipe: %v", err)
		return
	}
	defer func() { _ = pr.Close() }()
	pid1, cmd, err := startInCgroup(cgroupFD, "pid1", true, pw)
	_ = pw.Close()
	if err != nil {
		c.fail("start: %v", err)
		return
	}
	child := v2Process{Role: "child alloc"}
	lines := make(chan string, 4)
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	timeout := time.After(guestWait)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				c.fail("PID 1 ended before its child")
				break wait
			}
			if rest, ok := strings.CutPrefix(l, "child "); ok {
				child.PID, _ = strconv.Atoi(rest) // in PID 1's namespace
			} else if rest, ok := strings.CutPrefix(l, "ended "); ok {
				child.Exit = rest
				break wait
			} else {
				c.fail("PID 1 said %q", l)
			}
		case <-timeout:
			c.fail("the child allocator did not end within %s", guestWait)
			break wait
		}
	}
	c.ProcsAfter = procs(c.Cgroup)
	pid1.Survived = cmd.Process.Signal(syscall.Signal(0)) == nil
	_ = cmd.Process.Kill()
	pid1.Exit = waitExit(cmd, guestWait)
	if pid1.Survived {
		pid1.Exit = ""
	}
	c.Processes = append(c.Processes, *pid1, child)
}

// runGroup: three sleepers, then an allocator, with memory.oom.group 1.
func runGroup(c *v2Case, cgroupFD int) {
	var cmds []*exec.Cmd
	for _, role := range []string{"sleep", "sleep", "sleep", "alloc"} {
		var p *v2Process
		var cmd *exec.Cmd
		var err error
		if role == "sleep" {
			// The sleepers run before the allocator starts: the group kill finds them
			// asleep, not starting.
			p, cmd, err = startReady(cgroupFD, role)
		} else {
			p, cmd, err = startInCgroup(cgroupFD, role, false, nil)
		}
		if err != nil {
			c.fail("start %s: %v", role, err)
			break
		}
		c.Processes = append(c.Processes, *p)
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		c.Processes[i].Exit = waitExit(cmd, guestWait)
	}
	c.ProcsAfter = procs(c.Cgroup)
}

// startInCgroup starts the test binary in a role, in the cgroup (clone3's CLONE_INTO_CGROUP:
// it is in the container from its first instruction), in a PID namespace of its own if newPID.
func startInCgroup(cgroupFD int, role string, newPID bool, stdout io.Writer) (*v2Process, *exec.Cmd, error) {
	cmd := exec.Command(os.Args[0], guestArg, role)
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	if newPID {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return &v2Process{Role: role, PID: cmd.Process.Pid}, cmd, nil
}

// startReady starts the test binary in a role in the cgroup and waits for its "ready" line.
func startReady(cgroupFD int, role string) (*v2Process, *exec.Cmd, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = pr.Close() }()
	p, cmd, err := startInCgroup(cgroupFD, role, false, pw)
	_ = pw.Close()
	if err != nil {
		return nil, nil, err
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if line == "ready\n" {
			return p, cmd, nil
		}
		err = fmt.Errorf("%s said %q", role, line)
	case <-time.After(guestWait):
		err = fmt.Errorf("%s not ready within %s", role, guestWait)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, nil, err
}

// waitExit waits for the process to end, killing it after d, and says how it ended.
func waitExit(cmd *exec.Cmd, d time.Duration) string {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitString(cmd.ProcessState, err)
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return "not ended within " + d.String()
	}
}

func waitFor(cond func() bool, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func readOne(r *Reader, instance []Instance) v2Read {
	m, err := r.Read(instance)
	v, ok := m[instance[0].ContainerID]
	out := v2Read{Value: v.Kills, GroupKills: v.GroupKills, Found: ok}
	if err != nil {
		out.Err = err.Error()
	}
	return out
}

// procs lists a cgroup's cgroup.procs.
func procs(dir string) []int {
	b, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// readKeyed reads a file of "key value" lines; nil when it is not there.
func readKeyed(path string) map[string]uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	m := map[string]uint64{}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				m[k] = n
			}
		}
	}
	return m
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// openKmsg opens the kernel's log at its end; -1 when it cannot.
func openKmsg() int {
	fd, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if _, err := syscall.Seek(fd, 0, io.SeekEnd); err != nil {
		_ = syscall.Close(fd)
		return -1
	}
	return fd
}

// readKmsg reads the kernel's log records written since openKmsg and keeps those about OOM
// kills, with the number of "Killed process" lines; it closes fd.
func readKmsg(fd int) ([]string, int) {
	if fd < 0 {
		return []string{"(no /dev/kmsg)"}, -1
	}
	defer func() { _ = syscall.Close(fd) }()
	var lines []string
	killed := 0
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records were overwritten before they were read
		}
		if err != nil || n <= 0 {
			break
		}
		// A record is "prio,seq,time,flags;message\n" and continuation lines.
		_, msg, _ := strings.Cut(string(buf[:n]), ";")
		msg, _, _ = strings.Cut(msg, "\n")
		if strings.Contains(msg, "Killed process") {
			killed++
		}
		if strings.Contains(msg, "Killed process") || strings.Contains(msg, "oom-kill:") ||
			strings.Contains(msg, "memory.oom.group") || strings.Contains(msg, "out of memory") ||
			strings.Contains(msg, "oom_reaper") {
			lines = append(lines, msg)
		}
	}
	return lines, killed
}
