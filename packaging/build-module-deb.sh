#!/bin/bash
# `make module-deb`: builds libnginx-mod-http-push-stream for Debian 12 into
# packaging/out/, from Debian's own orig tarball and our debian/ folder
# (packaging/libnginx-mod-http-push-stream/debian/).
#
# The tarball is downloaded once from the Debian archive's pool and cached in
# build/module-deb/cache/. Every build checks it against the sha256 pinned in
# packaging/libnginx-mod-http-push-stream/orig.sha256 BEFORE unpacking it: a
# mismatch stops the build naming both hashes, and nothing is unpacked (the
# file is moved aside to *.rejected so the next build downloads it again).
# Then dpkg-buildpackage (source and binary) and lintian: errors and warnings
# fail the build.
#
# MODULE_DEB_BUILD_DIR moves build/module-deb elsewhere (the tests use it);
# DEBIAN_MIRROR names another Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
package_dir=packaging/libnginx-mod-http-push-stream
pin_file=$package_dir/orig.sha256
build_dir=${MODULE_DEB_BUILD_DIR:-build/module-deb}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Debian's own tools only (not .venv's python or a pyenv on PATH).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

fail() {
    echo "module-deb: $*" >&2
    exit 1
}

source_name=$(dpkg-parsechangelog -l "$package_dir/debian/changelog" -S Source)
distribution=$(dpkg-parsechangelog -l "$package_dir/debian/changelog" -S Distribution)
# The package depends on the ABI of the nginx it is built against: build it on
# the release it is for (Debian 13 ships its own libnginx-mod-http-push-stream).
# shellcheck source=/dev/null
. /etc/os-release
[ "${VERSION_CODENAME:-}" = "$distribution" ] ||
    fail "this package is for Debian $distribution and builds only there (this host: ${PRETTY_NAME:-unknown})"
version=$(dpkg-parsechangelog -l "$package_dir/debian/changelog" -S Version)
upstream_version=${version#*:}
upstream_version=${upstream_version%-*}
tarball=${source_name}_${upstream_version}.orig.tar.xz

read -r pinned_sha256 pinned_name <"$pin_file"
[ "$pinned_name" = "$tarball" ] ||
    fail "$pin_file pins $pinned_name, but debian/changelog ($version) needs $tarball"
[[ "$pinned_sha256" =~ ^[0-9a-f]{64}$ ]] || fail "$pin_file: '$pinned_sha256' is not a sha256"

cache=$build_dir/cache
cached=$cache/$tarball
mkdir -p "$cache"
if [ ! -s "$cached" ]; then
    # Debian's pool: pool/main/<libX or first letter>/<source>/<file>.
    case $source_name in
        lib?*) pool_prefix=${source_name:0:4} ;;
        *) pool_prefix=${source_name:0:1} ;;
    esac
    url=$mirror/pool/main/$pool_prefix/$source_name/$tarball
    echo "module-deb: downloading $url"
    curl -fsS --retry 3 -o "$cached.part" "$url" || fail "could not download $url"
    mv "$cached.part" "$cached"
fi

actual_sha256=$(sha256sum "$cached" | cut -d' ' -f1)
if [ "$actual_sha256" != "$pinned_sha256" ]; then
    mv "$cached" "$cached.rejected"
    fail "$tarball has sha256 $actual_sha256, but $pin_file pins $pinned_sha256;" \
        "nothing was unpacked (the file is kept as $cached.rejected)"
fi
echo "module-deb: $tarball sha256 $actual_sha256 matches $pin_file"

# Up to date: the .deb in packaging/out/ is newer than every input and was
# built against the nginx-dev installed now (REBUILD=1 builds anyway).
arch=$(dpkg --print-architecture)
deb=packaging/out/${source_name}_${version#*:}_$arch.deb
built_with=$build_dir/built-with
nginx_dev=$(dpkg-query -W -f '${Version}' nginx-dev 2>/dev/null) || fail "nginx-dev is not installed (make deps)"
if [ "${REBUILD:-0}" != 1 ] && [ -f "$deb" ] && [ "$(cat "$built_with" 2>/dev/null)" = "nginx-dev $nginx_dev" ] &&
    [ -z "$(find "$0" "$package_dir" -newer "$deb" -print -quit)" ]; then
    echo "module-deb: $deb is up to date (built against nginx-dev $nginx_dev)"
    exit 0
fi

# Build in a fresh staging directory: the orig tarball beside the unpacked
# source with our debian/ copied in, as dpkg-source expects.
stage=$build_dir/stage
rm -rf "$stage"
mkdir -p "$stage/$source_name-$upstream_version"
cp "$cached" "$stage/$tarball"
tar -C "$stage/$source_name-$upstream_version" --strip-components=1 -xJf "$stage/$tarball"
cp -a "$package_dir/debian" "$stage/$source_name-$upstream_version/debian"

echo "module-deb: dpkg-buildpackage -us -uc (source and binary)"
(cd "$stage/$source_name-$upstream_version" && dpkg-buildpackage -us -uc)

changes=$(ls "$stage/${source_name}_${version#*:}"_*.changes)
echo "module-deb: lintian $changes"
lintian --fail-on error,warning --info "$changes"

mkdir -p packaging/out
rm -f "$built_with"
rm -f packaging/out/"${source_name}"_*.deb packaging/out/"${source_name}"-dbgsym_*.deb
# The -dbgsym package stays in the staging directory.
debs=("$stage/${source_name}_${version#*:}"_*.deb)
cp "${debs[@]}" packaging/out/
for built in "${debs[@]}"; do
    echo "module-deb: packaging/out/$(basename "$built")"
    dpkg-deb --field "$built" Package Version Architecture Depends
    dpkg-deb --contents "$built"
done
echo "nginx-dev $nginx_dev" >"$built_with"
