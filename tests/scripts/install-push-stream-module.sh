#!/bin/bash
# `make push-stream-module`: puts nginx-push-stream-module where the tests'
# nginx loads it (/usr/lib/nginx/modules/ngx_http_push_stream_module.so) the
# way a push node gets it: as the Debian package libnginx-mod-http-push-stream,
# installed with apt on this host.
#   Debian 12: our package, built by `make module-deb` (packaging/).
#   Debian 13: Debian's own package from the archive.
# Fails, saying why, when the module cannot be had: the tests do not fall
# back to nchan.
set -euo pipefail
cd "$(dirname "$0")/../.."
package=libnginx-mod-http-push-stream
module=/usr/lib/nginx/modules/ngx_http_push_stream_module.so

fail() {
    echo "push-stream-module: $*" >&2
    exit 1
}

installed_version() {
    dpkg-query -W -f '${db:Status-Abbrev} ${Version}' "$package" 2>/dev/null | awk '$1 == "ii" { print $2 }'
}

[ "$(id -u)" = 0 ] || fail "installing $package with apt needs root (run make as root, as CI does)"
# shellcheck source=/dev/null
. /etc/os-release
case ${VERSION_CODENAME:-} in
    bookworm)
        packaging/build-module-deb.sh
        version=$(dpkg-parsechangelog -l packaging/$package/debian/changelog -S Version)
        deb=packaging/out/${package}_${version#*:}_$(dpkg --print-architecture).deb
        [ -f "$deb" ] || fail "$deb was not built"
        # Same version and the same files (a rebuild without a new version
        # still gets installed).
        if [ "$(installed_version)" = "$version" ] &&
            [ "$(dpkg-query --control-show "$package" md5sums)" = "$(dpkg-deb --info "$deb" md5sums)" ]; then
            echo "push-stream-module: $package $version (built here) is installed"
        else
            echo "push-stream-module: apt-get install ./$deb"
            apt-get install -y --no-install-recommends --reinstall "./$deb" ||
                fail "apt refused $deb (its Depends names the nginx ABI it was built for; see above)"
        fi
        ;;
    trixie)
        if [ -z "$(installed_version)" ]; then
            echo "push-stream-module: apt-get install $package (Debian 13's own)"
            apt-get install -y --no-install-recommends "$package" ||
                { apt-get update && apt-get install -y --no-install-recommends "$package"; } ||
                fail "apt could not install Debian's $package"
        fi
        ;;
    *)
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
echo "push-stream-module: $package $(installed_version): $module loads into $(nginx -v 2>&1)"
