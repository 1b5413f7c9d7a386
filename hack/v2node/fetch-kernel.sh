#!/usr/bin/env bash
# Puts the guest kernel of the cgroup v2 node under OUT (default _build/v2node/kernel): the same
# Debian kernel as make v2-kernel's, with the modules a node needs on top of the 9p ones: the
# virtio network card (the guest reaches the API server through QEMU's user-mode network) and
# overlayfs (the guest's root and containerd's snapshots). Same layout as _build/v2kernel:
# OUT/vmlinuz, OUT/modules/*.ko, OUT/modules.load (insmod order) and OUT/version. Does nothing
# when OUT is complete.
set -euo pipefail

out=${1:-_build/v2node/kernel}
# The modules the guest loads by name; their dependencies come along.
wanted=(virtio_pci 9pnet_virtio 9p virtio_net overlay)

if [ -s "$out/vmlinuz" ] && [ -s "$out/modules.load" ] && [ -s "$out/version" ]; then
	echo ">> v2 node kernel already in $out: $(cat "$out/version")"
	exit 0
fi
PATH=$PATH:/usr/sbin:/sbin
for tool in apt-get apt-cache dpkg-deb depmod; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "fetch-kernel: $tool is missing (depmod: Debian's kmod package; make cluster-deps as root installs it)" >&2
		exit 1
	fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi

# The kernel of _build/v2kernel when there is one, so that both guests boot the same kernel;
# else the one linux-image-amd64 depends on.
pkg=
if [ -s _build/v2kernel/version ]; then
	pkg=$(sed -n 's/^.*(\(linux-image-[^ ]*\) .*$/\1/p' _build/v2kernel/version)
fi
if [ -z "$pkg" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }')
fi
[ -n "$pkg" ] || { echo "fetch-kernel: no kernel package known (run apt-get update)" >&2; exit 1; }
echo ">> downloading $pkg"
if ! (cd "$work" && apt-get download -qq "$pkg"); then
	[ "$(id -u)" -eq 0 ] || exit 1
	apt-get update -qq
	(cd "$work" && apt-get download -qq "$pkg")
fi
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/root"

kver=${pkg#linux-image-}
moddir=$work/root/lib/modules/$kver
[ -d "$moddir" ] || { echo "fetch-kernel: $pkg has no lib/modules/$kver" >&2; exit 1; }
depmod -b "$work/root" "$kver"

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
echo "$kver ($pkg $(dpkg-deb -f "$work"/"$pkg"_*.deb Version))" >"$out.tmp/version"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$out.tmp" "$out"
echo ">> v2 node kernel in $out: $(cat "$out/version"); modules: $(tr '\n' ' ' <"$out/modules.load")"
