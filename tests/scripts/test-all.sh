#!/bin/bash
# `make test`: runs each part as its own make target, timed, carrying on past a
# failed part so one run shows every failure; exits non-zero if any part failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
rm -f build/timings.txt
if [ -z "${PUSH_STREAM_SRC:-}" ]; then
    echo "NOTE: PUSH_STREAM_SRC is not set: nginx tests run against Debian's libnginx-mod-nchan."
else
    echo "NOTE: PUSH_STREAM_SRC=${PUSH_STREAM_SRC}: nginx tests build and use nginx-push-stream-module."
fi
# Parts that need no docker engine first, then the ones that do.
local_parts=(lint-python lint-nginx lint-units unit unit-debian integration deb)
docker_parts=(lint-ansible molecule package-test)
failed=()
started=$(date +%s)
for part in "${local_parts[@]}"; do
    tests/scripts/timed "$part" make --no-print-directory "$part" || failed+=("$part")
done
tests/scripts/docker-engine.sh start || failed+=(docker-engine)
trap 'tests/scripts/docker-engine.sh stop' EXIT
for part in "${docker_parts[@]}"; do
    tests/scripts/timed "$part" make --no-print-directory "$part" || failed+=("$part")
done
echo
echo "=== make test: time per part"
cat build/timings.txt
echo "total $(( $(date +%s) - started ))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED parts: ${failed[*]}"
    exit 1
fi
echo "all parts passed"
