#!/usr/bin/env bash
# Installs the Debian packages the local cluster's node needs: runc (the OCI runtime containerd's
# shim calls), the CNI plugins (a loopback-only network makes the runtime report NetworkReady),
# and the mount/namespace utilities the kubelet calls; and Prometheus, the real backend the
# end-to-end tests scrape the collector's prometheus exporter with (each test starts its own
# server on a loopback port with a temporary configuration and storage; the package's own service
# is not used). And what the kernel-level tests on cgroup v2 boot a Debian kernel with in QEMU
# (hack/v2kernel, make v2-kernel): the emulator, a static busybox for the guest's initramfs, cpio
# to pack it and kmod's depmod, whose modules.dep orders the guest's modules; e2fsprogs'
# mkfs.ext4 formats the cgroup v2 node's disk. Safe to run again:
# it does nothing when every package is already installed.
set -euo pipefail

# ca-certificates: the CA bundle make image puts into the collector's image.
# qemu-system-x86, busybox-static, cpio, kmod: the cgroup v2 guest of the kernel-level tests.
# e2fsprogs: the ext4 disk of the cgroup v2 node's kubelet folder.
packages=(runc containernetworking-plugins iptables mount util-linux prometheus ca-certificates
	qemu-system-x86 busybox-static cpio kmod e2fsprogs)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo ">> packages already installed: ${packages[*]}"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: must run as root to install: ${missing[*]}" >&2
	exit 1
fi

echo ">> installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
