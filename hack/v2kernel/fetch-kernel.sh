#!/usr/bin/env bash
# fetch-kernel.sh [OUT [MODULE...]]: puts a cgroup v2 capable guest kernel (QEMU) under OUT
# (default _build/v2kernel): Debian's linux-image-amd64 kernel, downloaded with apt-get download
# and unpacked with dpkg-deb -x (nothing is installed on the host), as OUT/vmlinuz, the MODULEs
# the guest loads by name and their dependencies as OUT/modules/*.ko, and OUT/modules.load, their
# names in the order to insmod them (dependencies first, from depmod's modules.dep). The default
# MODULEs are those the kernel-level tests need to mount the host's root over 9p; the cgroup v2
# node adds the network card's, overlayfs's and the disk's (virtio_blk, ext4). Does nothing when
# OUT is complete with these MODULEs (OUT/modules.wanted names them); the kernel's version is in
# OUT/version.
set -euo pipefail

out=${1:-_build/v2kernel}
shift || true
wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then wanted=(virtio_pci 9pnet_virtio 9p); fi

if [ -s "$out/vmlinuz" ] && [ -s "$out/modules.load" ] && [ -s "$out/version" ] &&
	[ "$(cat "$out/modules.wanted" 2>/dev/null)" = "${wanted[*]}" ]; then
	echo ">> v2 kernel already in $out: $(cat "$out/version")"
	exit 0
fi
# depmod is in /sbin, which a user's PATH may not have.
PATH=$PATH:/usr/sbin:/sbin
for tool in apt-get apt-cache dpkg-deb depmod; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "fetch-kernel: $tool is missing (depmod: Debian's kmod package; make cluster-deps as root installs it)" >&2
		exit 1
	fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt-get download, as root, downloads as the user _apt (and warns when it cannot).
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi

# Lists of the packages that are older than the mirror's make the download fail: as root, they
# are brought up to date once.
update_lists() {
	[ "$(id -u)" -eq 0 ] || return 1
	echo ">> apt-get update"
	apt-get update -qq
}

# linux-image-amd64 is a metapackage: the kernel is the linux-image-<version>-amd64 it depends on.
kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }'
}
pkg=$(kernel_package)
if [ -z "$pkg" ] && update_lists; then pkg=$(kernel_package); fi
if [ -z "$pkg" ]; then
	echo "fetch-kernel: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2
	exit 1
fi
echo ">> downloading $pkg"
if ! (cd "$work" && apt-get download -qq "$pkg"); then
	update_lists || exit 1
	pkg=$(kernel_package)
	(cd "$work" && apt-get download -qq "$pkg")
fi
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/root"

kver=${pkg#linux-image-}
moddir=$work/root/lib/modules/$kver
[ -d "$moddir" ] || { echo "fetch-kernel: $pkg has no lib/modules/$kver" >&2; exit 1; }
depmod -b "$work/root" "$kver"

# load_order NAME: the paths (relative to moddir) of NAME's dependencies, then NAME, once each.
declare -A seen=()
order=()
load_order() {
	local name=$1 line path deps dep
	line=$(grep -E "(^|/)${name}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1)
	[ -n "$line" ] || { echo "fetch-kernel: no module $name in $pkg" >&2; exit 1; }
	path=${line%%:*}
	[ -z "${seen[$path]:-}" ] || return 0
	seen[$path]=1
	deps=${line#*:}
	# modules.dep lists the dependencies of a dependency too; loading them in reverse order
	# puts each one after what it needs.
	local rev=()
	for dep in $deps; do rev=("$dep" "${rev[@]}"); done
	for dep in "${rev[@]}"; do
		dep=${dep##*/}
		load_order "${dep%%.ko*}"
	done
	order+=("$path")
}
for m in "${wanted[@]}"; do load_order "$m"; done

rm -rf "$out.tmp"
mkdir -p "$out.tmp/modules"
: >"$out.tmp/modules.load"
for path in "${order[@]}"; do
	name=${path##*/}
	case $name in
	*.ko) cp "$moddir/$path" "$out.tmp/modules/$name" ;;
	*.ko.xz) xz -dc "$moddir/$path" >"$out.tmp/modules/${name%.xz}" ;;
	*.ko.zst) zstd -qdc "$moddir/$path" >"$out.tmp/modules/${name%.zst}" ;;
	*.ko.gz) gzip -dc "$moddir/$path" >"$out.tmp/modules/${name%.gz}" ;;
	*) echo "fetch-kernel: $path: unknown module file" >&2; exit 1 ;;
	esac
	echo "${name%%.ko*}.ko" >>"$out.tmp/modules.load"
done
cp "$work/root/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
echo "${wanted[*]}" >"$out.tmp/modules.wanted"
echo "$kver ($pkg $(dpkg-deb -f "$work"/"$pkg"_*.deb Version))" >"$out.tmp/version"
rm -rf "$out"
mv "$out.tmp" "$out"
echo ">> v2 kernel in $out: $(cat "$out/version"); modules: $(tr '\n' ' ' <"$out/modules.load")"
