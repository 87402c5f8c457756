#!/bin/bash
# `make package-test`: tests/package/test-package.sh on Debian 12 (bookworm)
# and Debian 13 (trixie) at the same time, each line prefixed with its release;
# prints how long each took and fails if either failed.
# SUITES="trixie" limits the run.
set -uo pipefail
cd "$(dirname "$0")/../.."
suites=(${SUITES:-bookworm trixie})

# Both images first (each is built once, cached): not twice in parallel.
for suite in "${suites[@]}"; do
    tests/image/build-base.sh "$suite" || exit 1
done

pids=()
for suite in "${suites[@]}"; do
    (
        set -o pipefail
        tests/scripts/timed "package-test $suite" tests/package/test-package.sh "$suite" 2>&1 |
            sed -u "s/^/[$suite] /"
    ) &
    pids+=($!)
done
failed=()
for i in "${!suites[@]}"; do
    wait "${pids[$i]}" || failed+=("${suites[$i]}")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "package-test: FAILED on ${failed[*]}"
    exit 1
fi
echo "package-test: passed on ${suites[*]}"
