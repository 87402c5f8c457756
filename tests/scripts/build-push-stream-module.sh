#!/bin/bash
# `make push-stream-module`: builds nginx-push-stream-module from $PUSH_STREAM_SRC
# into build/push-stream/ for the integration tests, with the push_stream role's
# own build script (one build recipe). Without PUSH_STREAM_SRC the tests use
# Debian's libnginx-mod-nchan and there is nothing to build.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${PUSH_STREAM_SRC:-}" ]; then
    echo "push-stream-module: PUSH_STREAM_SRC is not set: tests use Debian's libnginx-mod-nchan, nothing to build."
    exit 0
fi
exec ansible/roles/push_stream/files/build-push-stream-module.sh "$PUSH_STREAM_SRC" build/push-stream
