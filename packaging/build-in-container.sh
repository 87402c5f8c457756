#!/bin/bash
# Usage: packaging/build-in-container.sh SUITE COMMAND [ARG...]
# Runs COMMAND in a throwaway container of Debian SUITE (bookworm or trixie)
# with this repository mounted at the same path and as the working directory:
# how `make module-deb` builds a module package against another release's
# nginx than the host's (a module is built for the exact nginx it loads into).
#
# The container image is the test base image (tests/image/build-base.sh SUITE)
# plus the module build's tools (nginx-dev, a compiler, lintian, ...), built
# once as realtime-glue/module-build:SUITE-RECIPE (RECIPE: a hash of this
# script and the base image's name). Uses docker: run it (make module-deb,
# make repo) under /tmp/rg-docker.lock on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 SUITE COMMAND [ARG...]" >&2; exit 2; }
suite=$1
shift

tests/scripts/docker-engine.sh start >/dev/null
tests/image/build-base.sh "$suite" >/dev/null
base=$(tests/image/build-base.sh --name "$suite")
recipe=$( (cat "$0"; echo "$base") | sha256sum | cut -c1-12)
image=realtime-glue/module-build:$suite-$recipe

if ! docker image inspect "$image" >/dev/null 2>&1; then
    echo "build-in-container: building $image from $base"
    docker build -q -t "$image" - <<DOCKERFILE
FROM $base
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       nginx-dev libssl-dev build-essential dpkg-dev fakeroot lintian curl xz-utils \
    && apt-get clean
DOCKERFILE
fi

echo "build-in-container: $suite: $*"
docker run --rm --name "realtime-glue-build-$suite-$$" -v "$PWD:$PWD" -w "$PWD" "$image" "$@"
