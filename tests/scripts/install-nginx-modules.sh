#!/bin/bash
# `make nginx-modules`: puts our nginx modules where the tests' nginx
# loads them (/usr/lib/nginx/modules/) the way a push node gets them: as
# Debian packages installed with apt on this host.
#
#   tests/scripts/install-nginx-modules.sh [PACKAGE]
#
#   libnginx-mod-http-push-stream (the default): nginx-push-stream-module.
#     Debian 12: our package, built by `make module-deb` (packaging/).
#     Debian 13: Debian's own package from the archive.
#   libnginx-mod-http-subscribe-signature: the check of signed subscribe URLs
#     (nginx/subscribe-signature/), built here for this host's release.
# Fails, saying why, when the module cannot be had: the tests do not fall
# back to nchan.
set -euo pipefail
cd "$(dirname "$0")/../.."
package=${1:-libnginx-mod-http-push-stream}
case $package in
    libnginx-mod-http-push-stream) module=/usr/lib/nginx/modules/ngx_http_push_stream_module.so ;;
    libnginx-mod-http-subscribe-signature) module=/usr/lib/nginx/modules/ngx_http_subscribe_signature_module.so ;;
    *)
        echo "nginx-modules: unknown package $package" >&2
        exit 1
        ;;
esac

fail() {
    echo "nginx-modules: $*" >&2
    exit 1
}

installed_version() {
    dpkg-query -W -f '${db:Status-Abbrev} ${Version}' "$package" 2>/dev/null | awk '$1 == "ii" { print $2 }'
}

[ "$(id -u)" = 0 ] || fail "installing $package with apt needs root (run make as root, as CI does)"
# shellcheck source=/dev/null
. /etc/os-release
release=${VERSION_CODENAME:-}:$package
case $release in
    bookworm:* | trixie:libnginx-mod-http-subscribe-signature)
        packaging/build-module-deb.sh "$package"
        version=$(dpkg-parsechangelog -l packaging/$package/debian/changelog -S Version)
        # Our own code is built for each release (build-module-deb.sh: ~deb<N>).
        [ -f "packaging/$package/source-dir" ] && version=$version~deb${VERSION_ID%%.*}
        deb=packaging/out/$VERSION_CODENAME/${package}_${version#*:}_$(dpkg --print-architecture).deb
        [ -f "$deb" ] || fail "$deb was not built"
        # Same version and the same files (a rebuild without a new version
        # still gets installed).
        if [ "$(installed_version)" = "$version" ] &&
            [ "$(dpkg-query --control-show "$package" md5sums)" = "$(dpkg-deb --info "$deb" md5sums)" ]; then
            echo "nginx-modules: $package $version (built here) is installed"
        else
            echo "nginx-modules: apt-get install ./$deb"
            apt-get install -y --no-install-recommends --reinstall "./$deb" ||
                fail "apt refused $deb (its Depends names the nginx ABI it was built for; see above)"
        fi
        ;;
    trixie:*)
        if [ -z "$(installed_version)" ]; then
            echo "nginx-modules: apt-get install $package (Debian 13's own)"
            apt-get install -y --no-install-recommends "$package" ||
                { apt-get update && apt-get install -y --no-install-recommends "$package"; } ||
                fail "apt could not install Debian's $package"
        fi
        ;;
    *:*)
        fail "this host is ${PRETTY_NAME:-an unknown system}; supported: Debian 12 (bookworm), Debian 13 (trixie)"
        ;;
esac

[ -f "$module" ] || fail "$module is missing although $package is installed"
# The module loads into this host's nginx (the same check dh_auto_test runs).
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
printf 'load_module %s;\nevents {}\n' "$module" >"$conf"
nginx -q -t -g 'error_log /dev/null; pid /dev/null;' -c "$conf" ||
    fail "this host's nginx does not load $module"
echo "nginx-modules: $package $(installed_version): $module loads into $(nginx -v 2>&1)"
