// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// What the guest runs: its /init (busybox, in an initramfs made for each start) builds the node's
// root from the host's and chroots into it to run node.sh, which starts containerd and the
// kubelet and reports on the serial console.

package v2node

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Guest-side names: the network QEMU's user mode gives the guest, the address the API server is
// forwarded to, and the writable share that holds the node's configuration and logs.
const (
	guestIP         = "10.0.2.15"
	guestGateway    = "10.0.2.2"
	guestDNS        = "10.0.2.3"
	guestAPIAddress = "10.0.2.100"
	guestAPIPort    = 6443
	// apiServerName is a name the API server's certificate holds (its SANs are localhost,
	// 127.0.0.1, the kubernetes service names and 10.96.0.1); the guest's kubeconfig verifies
	// the forwarded address against it.
	apiServerName = "kubernetes"
	shareTag      = "v2node"
	shareMount    = "/v2node"

	// markerPrefix starts every line the guest's scripts print for the host to read.
	markerPrefix = "@@v2node "
	markerSuffix = "@@"
)

// initScript is the guest's /init. %[1]s: the modules to insmod, %[2]s: the node name, %[3]s:
// the repository's folder on the host, whose binaries and images the node runs.
//
// The root is an overlay of the host's root (9p, read-only) under a tmpfs, so the host's
// dynamic binaries (runc, mount, the CNI plugins) run in a chroot as they do on the host; the
// runtime's folder is a tmpfs of its own, since overlayfs cannot be the upper layer of
// containerd's overlay snapshots, and the kubelet's is the ext4 disk (/dev/vda).
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "` + markerPrefix + `$*` + markerSuffix + `"; }
fail() { say "failed $*"; poweroff -f; sleep 60; }
mount -t proc proc /proc || fail mount proc
mount -t sysfs sysfs /sys || fail mount sysfs
mount -t devtmpfs devtmpfs /dev || fail mount devtmpfs
for m in %[1]s; do insmod /lib/modules/$m || fail insmod $m; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || fail mount the host root over 9p
mount -t tmpfs -o mode=755 tmpfs /rw || fail mount the root tmpfs
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /root || fail mount the overlay root
R=/root
mount -t proc proc $R/proc || fail mount proc in the root
mount -t sysfs sysfs $R/sys || fail mount sysfs in the root
mount -t devtmpfs devtmpfs $R/dev || fail mount devtmpfs in the root
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail mount cgroup2
echo "+cpuset +cpu +io +memory +hugetlb +pids" >$R/sys/fs/cgroup/cgroup.subtree_control || fail delegate the controllers
for d in /run /tmp /var/lib/containerd /var/log /etc/cni; do
	mkdir -p $R$d && mount -t tmpfs -o mode=755 tmpfs $R$d || fail mount a tmpfs at $d
done
# The disk appears once virtio_blk has probed it.
i=0
until [ -b /dev/vda ]; do i=$((i+1)); [ $i -lt 100 ] || fail no disk /dev/vda; sleep 0.1; done
mkdir -p $R/var/lib/kubelet && mount -t ext4 /dev/vda $R/var/lib/kubelet || { dmesg | tail -n 5; fail mount the kubelet disk; }
# The repository, also where one of those tmpfs hides it (a clone under /tmp).
mkdir -p $R%[3]s && mount --bind /host%[3]s $R%[3]s || fail bind the repository
mkdir -p $R` + shareMount + `
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ` + shareTag + ` $R` + shareMount + ` || fail mount the node share
ip link set lo up
ip link set eth0 up || fail no network card
ip addr add ` + guestIP + `/24 dev eth0
ip route add default via ` + guestGateway + `
hostname %[2]s
rm -f $R/etc/hosts $R/etc/resolv.conf $R/etc/hostname
printf '127.0.0.1 localhost\n` + guestIP + ` %[2]s\n' >$R/etc/hosts
echo "nameserver ` + guestDNS + `" >$R/etc/resolv.conf
echo %[2]s >$R/etc/hostname
say "root-ready $(cut -d' ' -f1 /proc/uptime)"
chroot $R /bin/sh ` + shareMount + `/node.sh
say "node-script-exited $?"
poweroff -f
sleep 60
`

// nodeScript runs in the chroot. %[1]s: the cluster's bin folder, %[2]s: the image archives,
// %[3]s: the node name.
//
// It reports, with the guest's uptime: containerd ready, the images imported, the kubelet started
// (with its pid and the clock ticks per second), then every 5 s the kubelet's CPU ticks
// (utime+stime of /proc/<pid>/stat); guestwatch reports the OOM kills in memory.events.
const nodeScript = `set -u
say() { echo "` + markerPrefix + `$*` + markerSuffix + `"; }
up() { cut -d' ' -f1 /proc/uptime; }
export PATH=%[1]s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
S=` + shareMount + `
mkdir -p $S/logs /run/containerd
containerd --config $S/containerd.toml --log-level warn >$S/logs/containerd.log 2>&1 &
i=0
until ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1; do
	i=$((i+1)); [ $i -lt 600 ] || { say "failed containerd did not answer"; exit 1; }
	sleep 0.5
done
say "containerd-ready $(up)"
$S/guestwatch 2>$S/logs/guestwatch.log &
for a in %[2]s; do
	ctr --address /run/containerd/containerd.sock --namespace k8s.io images import --platform linux/amd64 "$a" >>$S/logs/ctr.log 2>&1 || { say "failed import $a"; exit 1; }
done
say "images-imported $(up)"
kubelet --config=$S/kubelet.yaml --kubeconfig=$S/kubelet.kubeconfig --root-dir=/var/lib/kubelet \
	--cert-dir=/var/lib/kubelet/pki --hostname-override=%[3]s --v=1 >$S/logs/kubelet.log 2>&1 &
K=$!
say "kubelet-started $(up) $K $(getconf CLK_TCK)"
while :; do
	if [ -r /proc/$K/stat ]; then
		say "kubelet-cpu $(up) $(sed 's/^.*) //' /proc/$K/stat | awk '{print $12+$13}')"
	else
		say "kubelet-gone $(up)"
	fi
	sleep 5
done
`

// writeInitramfs writes a gzip'ed cpio (newc) archive of busybox, the kernel's modules and the
// /init.
func writeInitramfs(path, kernel, busybox, script string, modules []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	gz := gzip.NewWriter(f)
	w := newInitramfsWriter(gz)
	for _, d := range []string{"bin", "dev", "proc", "sys", "host", "rw", "root", "lib", "lib/modules"} {
		w.dir(d)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	w.file("bin/busybox", 0o755, bb)
	w.file("init", 0o755, []byte(script))
	for _, m := range modules {
		b, err := os.ReadFile(filepath.Join(kernel, "modules", m)) //nolint:gosec // G304: the kernel folder's list of its modules
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

// shellWords quotes each word for sh and joins them.
func shellWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
