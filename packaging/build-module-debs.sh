#!/bin/bash
# `make module-deb`: every nginx module package of ours, for every Debian
# release it is for, into packaging/out/<codename>/:
#   libnginx-mod-http-push-stream           Debian 12 (Debian 13 has its own)
#   libnginx-mod-http-subscribe-signature   Debian 12 and Debian 13
# Each is built by packaging/build-module-deb.sh against the nginx of its
# release: on this host for the host's release, in a container of the other
# (packaging/build-in-container.sh: docker, so under /tmp/rg-docker.lock on a
# shared machine). An up-to-date package is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. /etc/os-release

build() {
    local release=$1 package=$2
    if [ "$release" = "${VERSION_CODENAME:-}" ]; then
        packaging/build-module-deb.sh "$package"
    else
        packaging/build-in-container.sh "$release" packaging/build-module-deb.sh "$package"
    fi
}

build bookworm libnginx-mod-http-push-stream
build bookworm libnginx-mod-http-subscribe-signature
build trixie libnginx-mod-http-subscribe-signature
