#!/bin/bash
# `make module-deb`: builds our nginx module packages for the Debian release
# of this host into packaging/out/<codename>/ (a module is built against the
# nginx of one release and depends on its ABI, so each release gets its own):
#
#   packaging/build-module-deb.sh [PACKAGE]   (default libnginx-mod-http-push-stream)
#
# Two kinds of source:
#   - an orig tarball pinned in packaging/PACKAGE/orig.sha256
#     (libnginx-mod-http-push-stream: Debian's own, for Debian 12 only): downloaded
#     once from the Debian archive's pool and cached in build/module-deb/CODENAME/PACKAGE/cache/,
#     checked against the pinned sha256 BEFORE it is unpacked: a mismatch stops
#     the build naming both hashes, and nothing is unpacked (the file is moved
#     aside to *.rejected so the next build downloads it again);
#   - our own code, named by packaging/PACKAGE/source-dir
#     (libnginx-mod-http-subscribe-signature: nginx/subscribe-signature/), a
#     native package built for any release: its version gets the suffix
#     ~deb<N> (Debian N's build sorts below Debian N+1's) and its changelog
#     entry the release's codename, in the staging copy.
# Then dpkg-buildpackage (source and binary) and lintian: errors and warnings
# fail the build.
#
# MODULE_DEB_BUILD_DIR moves the package's build directory (build/module-deb/CODENAME/PACKAGE:
# its download cache, staging and built-with stamp) elsewhere (the tests use it);
# DEBIAN_MIRROR names another Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
package=${1:-libnginx-mod-http-push-stream}
package_dir=packaging/$package
pin_file=$package_dir/orig.sha256
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Debian's own tools only (not .venv's python or a pyenv on PATH).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

fail() {
    echo "module-deb: $*" >&2
    exit 1
}

[ -d "$package_dir/debian" ] || fail "no $package_dir/debian"
# shellcheck source=/dev/null
. /etc/os-release
codename=${VERSION_CODENAME:-}
out=packaging/out/$codename
build_dir=${MODULE_DEB_BUILD_DIR:-build/module-deb/$codename/$package}
source_name=$(dpkg-parsechangelog -l "$package_dir/debian/changelog" -S Source)
distribution=$(dpkg-parsechangelog -l "$package_dir/debian/changelog" -S Distribution)
version=$(dpkg-parsechangelog -l "$package_dir/debian/changelog" -S Version)

if [ -f "$pin_file" ]; then
    # The package depends on the ABI of the nginx it is built against: build it on
    # the release it is for (Debian 13 ships its own libnginx-mod-http-push-stream).
    [ "$codename" = "$distribution" ] ||
        fail "$package is for Debian $distribution and builds only there (this host: ${PRETTY_NAME:-unknown})"
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
    inputs=("$package_dir")
    source_tree=$source_name-$upstream_version
    # The orig tarball beside the unpacked source, as dpkg-source expects.
    build_source() {
        cp "$cached" "$stage/$tarball"
        tar -C "$stage/$source_tree" --strip-components=1 -xJf "$stage/$tarball"
    }
else
    [ -f "$package_dir/source-dir" ] || fail "$package_dir has neither orig.sha256 nor source-dir"
    module_source=$(cat "$package_dir/source-dir")
    [ -f "$module_source/config" ] || fail "$module_source (from $package_dir/source-dir) has no nginx module config"
    release=${VERSION_ID%%.*}
    case $codename in
        bookworm | trixie) ;;
        *) fail "this host is ${PRETTY_NAME:-an unknown system}; supported: Debian 12 (bookworm), Debian 13 (trixie)" ;;
    esac
    version=$version~deb$release
    inputs=("$package_dir" "$module_source")
    source_tree=$source_name-$version
    # Our code at the top of the source tree; this release's version and codename
    # in the changelog's first line.
    build_source() {
        cp -a "$module_source"/. "$stage/$source_tree/"
        sed -i "1s/^\(\S*\) ([^)]*) [^;]*;/\1 ($version) $codename;/" "$stage/$source_tree/debian/changelog"
    }
fi

# Up to date: the .deb in packaging/out/<codename>/ is newer than every input and was
# built against the nginx-dev installed now (REBUILD=1 builds anyway).
arch=$(dpkg --print-architecture)
deb=$out/${source_name}_${version#*:}_$arch.deb
built_with=$build_dir/built-with
nginx_dev=$(dpkg-query -W -f '${Version}' nginx-dev 2>/dev/null) || fail "nginx-dev is not installed (make deps)"
if [ "${REBUILD:-0}" != 1 ] && [ -f "$deb" ] && [ "$(cat "$built_with" 2>/dev/null)" = "nginx-dev $nginx_dev" ] &&
    [ -z "$(find "$0" "${inputs[@]}" -newer "$deb" -print -quit)" ]; then
    echo "module-deb: $deb is up to date (built against nginx-dev $nginx_dev)"
    exit 0
fi

# Build in a fresh staging directory, with our debian/ copied in.
stage=$build_dir/stage
rm -rf "$stage"
mkdir -p "$stage/$source_tree"
cp -a "$package_dir/debian" "$stage/$source_tree/debian"
build_source

echo "module-deb: dpkg-buildpackage -us -uc (source and binary)"
(cd "$stage/$source_tree" && dpkg-buildpackage -us -uc)

changes=$(ls "$stage/${source_name}_${version#*:}"_*.changes)
echo "module-deb: lintian $changes"
lintian --fail-on error,warning --info "$changes"

mkdir -p "$out"
rm -f "$built_with"
rm -f "$out/${source_name}"_*.deb "$out/${source_name}"-dbgsym_*.deb
# The -dbgsym package stays in the staging directory.
debs=("$stage/${source_name}_${version#*:}"_*.deb)
cp "${debs[@]}" "$out/"
for built in "${debs[@]}"; do
    echo "module-deb: $out/$(basename "$built")"
    dpkg-deb --field "$built" Package Version Architecture Depends
    dpkg-deb --contents "$built"
done
echo "nginx-dev $nginx_dev" >"$built_with"
