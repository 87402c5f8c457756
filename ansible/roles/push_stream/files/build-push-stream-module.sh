#!/bin/bash
# Usage: build-push-stream-module.sh MODULE_SRC_DIR OUT_DIR
#
# Builds nginx-push-stream-module from MODULE_SRC_DIR as a dynamic module for
# the nginx Debian has installed on this host: OUT_DIR/ngx_http_push_stream_module.so,
# with the nginx package version it was built for in OUT_DIR/nginx-version.
# Prints "already built" and changes nothing when that version is current.
#
# A dynamic module must be compiled against the source of the nginx that loads
# it (--with-compat), so the source comes from Debian's own source package
# (a deb-src entry is added when none exists). Before handing on the module the
# installed nginx must load it, so a broken load_module never reaches a config.
# Shared by the push_stream role and the tests (tests/scripts/build-push-stream-module.sh).
set -euo pipefail
src=$(realpath "$1")
out=$2
so=$out/ngx_http_push_stream_module.so
[ -f "$src/config" ] || { echo "$src has no nginx module 'config' file" >&2; exit 1; }

nginx_version=$(dpkg-query -W -f='${Version}' nginx-common)
if [ -f "$so" ] && [ "$(cat "$out/nginx-version" 2>/dev/null)" = "$nginx_version" ]; then
    echo "push-stream-module: already built for nginx $nginx_version: $so"
    exit 0
fi

if ! grep -rqs '^\s*\(Types:.*deb-src\|deb-src\)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "push-stream-module: adding /etc/apt/sources.list.d/realtime-glue-deb-src.sources"
    cat >/etc/apt/sources.list.d/realtime-glue-deb-src.sources <<'SOURCES'
# Added by realtime-glue (build-push-stream-module.sh): Debian source packages,
# to build nginx modules against the installed nginx's own source.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -q >/dev/null
fi

work=$(mktemp -d /tmp/push-stream-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # lets apt-get source download as its _apt user

fetch_source() {
    rm -f "$work"/nginx_*
    (cd "$work" && apt-get source -q --download-only "nginx=$1" >download.log 2>&1)
}
upstream=${nginx_version#*:}; upstream=${upstream%%-*}
source_version=$nginx_version
if ! fetch_source "$source_version"; then
    # A mirror may carry a security update's binaries without its source. Any
    # Debian revision of the same upstream release gives the same module ABI
    # (load_module checks the upstream version and the compat signature); the
    # load check below proves it.
    source_version=
    for candidate in $(apt-cache showsrc nginx | awk '/^Version:/ {print $2}' \
            | grep -F "${upstream}-" | grep -vxF "$nginx_version" | sort -Vr); do
        if fetch_source "$candidate"; then source_version=$candidate; break; fi
    done
    [ -n "$source_version" ] || { cat "$work/download.log" >&2; echo "no source package of nginx $upstream could be fetched" >&2; exit 1; }
    echo "push-stream-module: NOTE: the mirror has no source of nginx $nginx_version; using $source_version (same upstream $upstream)"
fi
(cd "$work" && dpkg-source -x --no-check ./nginx_*.dsc nginx >/dev/null)

echo "push-stream-module: building against nginx $source_version source (installed: $nginx_version)"
(
    cd "$work/nginx"
    ./configure --with-compat --add-dynamic-module="$src" >"$work/configure.log" 2>&1 \
        || { tail -n 30 "$work/configure.log" >&2; exit 1; }
    make -j"$(nproc)" modules >"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
)

mkdir -p "$work/check" "$out"
printf 'load_module %s;\npid %s/nginx.pid;\nerror_log stderr;\nevents {}\nhttp { push_stream_shared_memory_size 1M; }\n' \
    "$work/nginx/objs/ngx_http_push_stream_module.so" "$work/check" >"$work/check/nginx.conf"
nginx -t -p "$work/check" -c nginx.conf >"$work/check.log" 2>&1 \
    || { cat "$work/check.log" >&2; echo "push-stream-module: the installed nginx refuses the built module" >&2; exit 1; }

install -m 0644 "$work/nginx/objs/ngx_http_push_stream_module.so" "$so.new"
mv "$so.new" "$so"
echo "$nginx_version" >"$out/nginx-version"
echo "push-stream-module: built $so for nginx $nginx_version"
