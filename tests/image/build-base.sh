#!/bin/bash
# Builds the container image every molecule scenario and the test cluster boot:
# Debian bookworm (debootstrap minbase) with systemd as PID 1 and what Ansible
# and our roles need, imported as realtime-glue/systemd:bookworm. No registry
# pull is involved.
#
# Cached twice: the image is not rebuilt when docker already has it, and the
# root file system tarball is kept in build/base-image/ so that a fresh docker
# engine only needs `docker import` (seconds) instead of debootstrap (a minute).
# REBUILD=1 forces both.
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${BASE_IMAGE:-realtime-glue/systemd:bookworm}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,ca-certificates,sudo,gnupg,curl,apt-utils,procps
cache=build/base-image
# The tarball's name carries a hash of this script, so editing the package
# list or the tweaks below invalidates the cache.
recipe=$(sha256sum "$0" | cut -c1-12)
tarball=$cache/rootfs-$suite-$recipe.tar

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    if [ "$(docker image inspect -f '{{ index .Config.Labels "recipe" }}' "$image")" = "$recipe" ]; then
        echo "base-image: $image exists (recipe $recipe); nothing to do"
        exit 0
    fi
    echo "base-image: $image was built from another recipe; rebuilding"
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
