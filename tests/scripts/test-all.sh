#!/bin/bash
# `make test`: runs each part as its own make target, timed, carrying on past a
# failed part so one run shows every failure; exits non-zero if any part failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
rm -rf build/timings.txt build/logs
# Parts that need no docker engine first, then the ones that do, with the parts that
# mostly wait beside them.
local_parts=(lint-python lint-nginx lint-units unit unit-debian integration-main deb)
docker_parts=(lint-ansible molecule package-test cluster-test)
# The three-minute outage test mostly waits: it runs beside the docker parts (lint-ansible
# and molecule, whose containers bind no host port), its output in its log only. Its set-up
# (deps, nginx-modules) was made by the local parts: -o keeps make from running it again
# beside molecule's own package builds.
beside_parts=(integration-long-outage)
failed=()
started=$(date +%s)
# Set-up first (apt packages, the venv): nothing else can run without it.
if ! tests/scripts/timed deps make --no-print-directory deps; then
    echo "FAILED: make deps"
    echo "0 passed, 1 failed"
    exit 1
fi
for part in "${local_parts[@]}"; do
    tests/scripts/timed "$part" make --no-print-directory "$part" || failed+=("$part")
done
declare -A beside=()
for part in "${beside_parts[@]}"; do
    TIMED_QUIET=1 tests/scripts/timed "$part" make --no-print-directory -o deps -o nginx-modules "$part" &
    beside[$part]=$!
done
tests/scripts/docker-engine.sh start || failed+=(docker-engine)
trap 'tests/scripts/docker-engine.sh stop' EXIT
for part in "${docker_parts[@]}"; do
    tests/scripts/timed "$part" make --no-print-directory "$part" || failed+=("$part")
done
for part in "${beside_parts[@]}"; do
    if ! wait "${beside[$part]}"; then
        failed+=("$part")
        echo "--- $part FAILED: the last 100 lines of build/logs/$part.log"
        tail -n 100 "build/logs/$part.log"
    fi
done
echo
echo "=== make test: time per part"
cat build/timings.txt
echo "total $(( $(date +%s) - started ))s"
total_parts=$(( ${#local_parts[@]} + ${#docker_parts[@]} + ${#beside_parts[@]} ))
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED parts: ${failed[*]}"
    # The failed tests by name (pytest's summary lines), from each part's log.
    grep -hE '^(FAILED|ERROR) ' build/logs/*.log 2>/dev/null | sort -u | head -40
    echo "whole logs: build/logs/"
    echo "parts: $(( total_parts - ${#failed[@]} )) passed, ${#failed[@]} failed"
    exit 1
fi
echo "parts: ${total_parts} passed, 0 failed"
