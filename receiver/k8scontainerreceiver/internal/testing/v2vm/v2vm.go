// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package v2vm runs a program of this host in a QEMU guest whose kernel has cgroup v2 with every
// controller, for tests of what the kernel itself does in cgroup v2 (OOM kills, memory.events) on
// hosts that run cgroup v1, where the memory controller cannot be moved to the unified hierarchy.
//
// The guest is Debian's kernel, which make v2-kernel puts into _build/v2kernel
// (hack/v2kernel/fetch-kernel.sh), booted by qemu-system-x86_64 with TCG (no KVM) and a
// busybox initramfs made for each Run. Its /init loads the virtio and 9p modules, mounts the
// host's root read-only at /host, mounts cgroup2 at /sys/fs/cgroup with +memory +pids in the
// root's subtree_control, a tmpfs at /tmp, runs the program (/host/<program>) as root, prints its
// output between two marker lines on the serial console, and powers off. The program must be
// a static binary (CGO_ENABLED=0) and be where the guest can read it, which is anywhere on the
// host's root file system.
//
// The kernel prints nothing on the console but emergencies (loglevel=1), so that its OOM
// reports do not mix with the program's output: a program that wants them reads /dev/kmsg.
package v2vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

// The files of a kernel folder (make v2-kernel).
const (
	kernelFile  = "vmlinuz"
	modulesDir  = "modules"
	modulesLoad = "modules.load"
	versionFile = "version"
)

const (
	// KernelEnv names a kernel folder other than the _build/v2kernel found above the current
	// folder.
	KernelEnv = "OOMWATCH_V2KERNEL"
	// QEMU is the emulator.
	QEMU = "qemu-system-x86_64"
	// Busybox is the static busybox of Debian's busybox-static.
	Busybox = "/bin/busybox"

	// DefaultTimeout bounds a Run whose VM has none: boot, program and power-off.
	DefaultTimeout = 5 * time.Minute

	beginMarker = "@@v2vm-output-begin@@"
	endMarker   = "@@v2vm-output-end"
	setupMarker = "@@v2vm-setup-failed"
)

// VM describes the guest a Run boots; the zero VM is the defaults.
type VM struct {
	// Kernel is the kernel folder; "": $OOMWATCH_V2KERNEL, else the first _build/v2kernel
	// in the current folder or one above it.
	Kernel string
	// MemoryMiB is the guest's memory; 0: 1024.
	MemoryMiB int
	// CPUs is the guest's number of CPUs; 0: 2.
	CPUs int
	// Timeout bounds the Run; 0: DefaultTimeout.
	Timeout time.Duration
}

// Run runs program with args in a guest of the default VM; see VM.Run.
func Run(ctx context.Context, program string, args ...string) (string, error) {
	var vm VM
	return vm.Run(ctx, program, args...)
}

// ExitError is the error of a Run whose program exited with a status other than 0.
type ExitError struct {
	Status int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("the program exited with status %d in the guest", e.Status)
}

// Run boots the guest, runs program (an absolute path on this host) with args in it and returns
// what the program wrote to its standard output and error. The error is an *ExitError when the
// program ran and exited with a status other than 0 (the output is returned too), or says why the
// guest did not run the program to its end, with the end of the guest's console.
func (vm VM) Run(ctx context.Context, program string, args ...string) (string, error) {
	if !filepath.IsAbs(program) {
		return "", fmt.Errorf("v2vm: the program must be an absolute path, not %q", program)
	}
	kernel, err := vm.kernelDir()
	if err != nil {
		return "", err
	}
	if err := checkTools(); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "v2vm-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	initrd := filepath.Join(dir, "initrd.gz")
	if err := writeInitramfs(initrd, kernel, program, args); err != nil {
		return "", fmt.Errorf("v2vm: initramfs: %w", err)
	}

	timeout := vm.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mem, cpus := vm.MemoryMiB, vm.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	cmd := exec.CommandContext(ctx, QEMU, //nolint:gosec // G204: the arguments are ours
		"-accel", "tcg,thread=multi", "-cpu", "max", "-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-no-reboot",
		"-kernel", filepath.Join(kernel, kernelFile), "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on",
	)
	var console, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &console, &stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	out := strings.ReplaceAll(console.String(), "\r\n", "\n")

	if i := strings.Index(out, setupMarker); i >= 0 {
		return "", fmt.Errorf("v2vm: the guest's /init failed: %s", firstLine(out[i+len(setupMarker):]))
	}
	begin := strings.Index(out, beginMarker+"\n")
	end := strings.LastIndex(out, "\n"+endMarker+" ")
	if begin < 0 || end < begin {
		why := "the guest did not run the program to its end"
		switch {
		case ctx.Err() != nil:
			why = fmt.Sprintf("the guest did not end within %s", timeout)
		case runErr != nil:
			why = fmt.Sprintf("%s: %v", QEMU, runErr)
		}
		return "", fmt.Errorf("v2vm: %s; qemu's stderr: %q; the console's end:\n%s", why, strings.TrimSpace(stderr.String()), tail(out, 40))
	}
	// The newline before the end marker is /init's, after output that may not end in one.
	output := out[begin+len(beginMarker)+1 : end]
	status, err := strconv.Atoi(strings.TrimSuffix(firstLine(out[end+1+len(endMarker)+1:]), "@@"))
	if err != nil {
		return output, fmt.Errorf("v2vm: no exit status at the output's end: %w", err)
	}
	if status != 0 {
		return output, &ExitError{Status: status}
	}
	return output, nil
}

// Require skips the test when the guest cannot run here (no QEMU, busybox or kernel), saying
// what is missing and how to get it; with CI=true it fails the test instead, so that a CI run
// cannot pass without the kernel-level tests.
func Require(tb testing.TB) {
	tb.Helper()
	err := Check()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("CI=true but the cgroup v2 guest cannot run: %v", err)
	}
	tb.Skipf("cgroup v2 guest tests skipped: %v", err)
}

// Check tells why a guest of the default VM cannot run here, nil when it can.
func Check() error {
	var vm VM
	if _, err := vm.kernelDir(); err != nil {
		return err
	}
	return checkTools()
}

func checkTools() error {
	if _, err := exec.LookPath(QEMU); err != nil {
		return fmt.Errorf("%s is missing: install Debian's qemu-system-x86 (make cluster-deps as root)", QEMU)
	}
	if err := checkStatic(Busybox); err != nil {
		return fmt.Errorf("%w: install Debian's busybox-static (make cluster-deps as root)", err)
	}
	return nil
}

// checkStatic tells whether path is a statically linked executable.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is not statically linked", path)
		}
	}
	return nil
}

// kernelDir finds the kernel folder and checks that it is complete.
func (vm VM) kernelDir() (string, error) {
	dir := vm.Kernel
	if dir == "" {
		dir = os.Getenv(KernelEnv)
	}
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		for d := wd; ; d = filepath.Dir(d) {
			if st, err := os.Stat(filepath.Join(d, "_build", "v2kernel")); err == nil && st.IsDir() {
				dir = filepath.Join(d, "_build", "v2kernel")
				break
			}
			if d == filepath.Dir(d) {
				return "", fmt.Errorf("no _build/v2kernel in %s or above it: run make v2-kernel (or set %s)", wd, KernelEnv)
			}
		}
	}
	for _, f := range []string{kernelFile, modulesLoad, versionFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil { //nolint:gosec // G703: the kernel folder is the test's
			return "", fmt.Errorf("the kernel folder %s is incomplete (%w): run make v2-kernel", dir, err)
		}
	}
	return filepath.Abs(dir)
}

// KernelVersion is the version of the kernel a VM boots, as make v2-kernel wrote it.
func (vm VM) KernelVersion() (string, error) {
	dir, err := vm.kernelDir()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, versionFile))
	return strings.TrimSpace(string(b)), err
}

// initScript is the guest's /init; %s are the modules to load and the command.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "` + setupMarker + ` $*@@"; poweroff -f; sleep 60; }
mount -t proc proc /proc || fail mount proc
mount -t sysfs sysfs /sys || fail mount sysfs
mount -t devtmpfs devtmpfs /dev || fail mount devtmpfs
mount -t tmpfs tmpfs /tmp || fail mount tmpfs
for m in %s; do insmod /lib/modules/$m || fail insmod $m; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || fail mount the host root over 9p
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail mount cgroup2
echo "+memory +pids" >/sys/fs/cgroup/cgroup.subtree_control || fail enable memory and pids
cd /
echo "` + beginMarker + `"
%s </dev/null 2>&1
status=$?
echo ""
echo "` + endMarker + ` $status@@"
poweroff -f
sleep 60
`

// writeInitramfs writes a gzip'ed cpio (newc) archive of busybox, the kernel's modules and the
// /init that runs program.
func writeInitramfs(path, kernel, program string, args []string) error {
	load, err := os.ReadFile(filepath.Join(kernel, modulesLoad))
	if err != nil {
		return err
	}
	modules := strings.Fields(string(load))
	command := []string{shellQuote("/host" + program)}
	for _, a := range args {
		command = append(command, shellQuote(a))
	}
	script := fmt.Sprintf(initScript, strings.Join(modules, " "), strings.Join(command, " "))

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	gz := gzip.NewWriter(f)
	w := newInitramfsWriter(gz)
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "host", "lib", "lib/modules"} {
		w.dir(d)
	}
	busybox, err := os.ReadFile(Busybox)
	if err != nil {
		return err
	}
	w.file("bin/busybox", 0o755, busybox)
	w.file("init", 0o755, []byte(script))
	for _, m := range modules {
		b, err := os.ReadFile(filepath.Join(kernel, modulesDir, m)) //nolint:gosec // G703: make v2-kernel's list of its modules
		if err != nil {
			return err
		}
		w.file("lib/modules/"+m, 0o644, b)
	}
	if err := w.close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// initramfsWriter writes the "newc" cpio archive the kernel unpacks an initramfs from; the
// first error sticks, and close returns it.
type initramfsWriter struct {
	w   *cpio.Writer
	err error
}

func newInitramfsWriter(w io.Writer) *initramfsWriter {
	return &initramfsWriter{w: cpio.NewWriter(w)}
}

func (a *initramfsWriter) dir(name string) {
	if a.err == nil {
		a.err = a.w.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeDir | 0o755, Links: 2})
	}
}

func (a *initramfsWriter) file(name string, perm cpio.FileMode, data []byte) {
	if a.err == nil {
		a.err = a.w.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | perm, Size: int64(len(data))})
	}
	if a.err == nil {
		_, a.err = a.w.Write(data)
	}
}

// close writes the trailer.
func (a *initramfsWriter) close() error {
	if a.err != nil {
		return a.err
	}
	return a.w.Close()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
