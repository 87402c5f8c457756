#!/bin/bash
# Usage: build-base.sh [SUITE]      (SUITE: bookworm (default) or trixie)
#        build-base.sh --name SUITE (prints the image name, builds nothing)
# Builds the container image every molecule scenario, the package test and the
# test cluster boot: Debian SUITE (debootstrap minbase) with systemd as PID 1
# and what Ansible and our roles need, imported as
# realtime-glue/systemd:SUITE-RECIPE.
# RECIPE is a hash of this script and the suite: users of the image name it
# with the recipe (`--name`), so worktrees with different recipes each keep
# their own image instead of rebuilding the shared one back and forth.
# No registry pull is involved.
#
# Cached twice: the image is not rebuilt when docker already has it, and the
# root file system tarball is kept in build/base-image/ so that a fresh docker
# engine only needs `docker import` (seconds) instead of debootstrap (a minute).
# REBUILD=1 forces both.
set -euo pipefail
cd "$(dirname "$0")/../.."

print_name=0
if [ "${1:-}" = --name ]; then
    print_name=1
    shift
fi
suite=${1:-bookworm}
case $suite in
    bookworm | trixie) ;;
    *) echo "base-image: unsupported suite '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac
# The recipe: this script and the suite (editing the package list or the
# tweaks below makes a new image and invalidates the cached tarball).
recipe=$( (cat "$0"; echo "$suite") | sha256sum | cut -c1-12)
image=realtime-glue/systemd:$suite-$recipe
if [ "$print_name" = 1 ]; then
    echo "$image"
    exit 0
fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,ca-certificates,sudo,gnupg,curl,apt-utils,procps
cache=build/base-image
tarball=$cache/rootfs-$suite-$recipe.tar

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "base-image: $image exists; nothing to do"
    exit 0
fi

if [ "${REBUILD:-0}" = 1 ] || [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    echo "base-image: debootstrap $suite into $rootfs"
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror"

    # apt inside the containers: the release, its updates and security.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    # Small and quiet containers: no recommends, no docs, no apt caches.
    cat >"$rootfs/etc/apt/apt.conf.d/90-container" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT
    # systemd as PID 1 in a container: units that need real hardware or a
    # console only fail or hang there.
    for unit in getty.target console-getty.service systemd-remount-fs.service \
        systemd-firstboot.service systemd-udevd.service systemd-udev-trigger.service \
        systemd-modules-load.service sys-kernel-debug.mount sys-kernel-tracing.mount \
        dev-hugepages.mount; do
        ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
    done
    # Each container gets its own machine id at first boot.
    : >"$rootfs/etc/machine-id"
    rm -f "$rootfs/var/lib/dbus/machine-id"
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/tmp/*
    # The package lists are gone: make them look ancient, so that Ansible's
    # `apt: cache_valid_time=...` updates them instead of trusting the image.
    touch -d @0 "$rootfs/var/lib/apt/lists"

    rm -f "$cache"/rootfs-$suite-*.tar
    tar --numeric-owner -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
fi

echo "base-image: docker import $tarball as $image"
docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    --change "LABEL recipe=$recipe" \
    "$tarball" "$image"
echo "base-image: $image ready"
