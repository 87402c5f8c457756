#!/bin/bash
# `make molecule`: runs `molecule test` for every scenario under
# ansible/roles/*/molecule/*/, two at a time (MOLECULE_JOBS), prints how long
# each took, carries on past a failure and exits non-zero if any failed.
# ROLES="redis sysctl" limits the run to those roles. Every scenario runs on
# Debian 12 and 13 at once (two platforms of the base config), from the images
# `make base-image` builds, named here with their recipe hash.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
base_config=$root/.config/molecule/config.yml

scenarios=()
for file in ansible/roles/*/molecule/*/molecule.yml; do
    [ -e "$file" ] || continue
    role=$(basename "$(dirname "$(dirname "$(dirname "$file")")")")
    if [ -n "${ROLES:-}" ] && [[ " $ROLES " != *" $role "* ]]; then
        continue
    fi
    scenarios+=("$role/$(basename "$(dirname "$file")")")
done
if [ ${#scenarios[@]} -eq 0 ]; then
    echo "molecule: no scenario found${ROLES:+ for roles: $ROLES}" >&2
    exit 1
fi

MOLECULE_IMAGE_BOOKWORM=$(tests/image/build-base.sh --name bookworm)
MOLECULE_IMAGE_TRIXIE=$(tests/image/build-base.sh --name trixie)
export MOLECULE_IMAGE_BOOKWORM MOLECULE_IMAGE_TRIXIE
echo "molecule: platforms $MOLECULE_IMAGE_BOOKWORM and $MOLECULE_IMAGE_TRIXIE"

# MOLECULE_JOBS scenarios at a time (default 2): each waits mostly on apt and
# systemd in its containers, and containers are named per role and scenario, so
# two runs side by side do not meet. Their output goes to build/logs/ (printed
# here when a scenario fails); the time of each is printed as it ends.
jobs_max=${MOLECULE_JOBS:-2}
run_scenario() {
    local role=${1%%/*} name=${1#*/}
    # ROLE_UNDER_TEST names the container (see the base config).
    TIMED_QUIET=1 tests/scripts/timed "molecule $1" \
        env -C "ansible/roles/$role" ROLE_UNDER_TEST="$role" \
        molecule --base-config "$base_config" test --scenario-name "$name"
}
declare -A running=()
failed=()
reap() {
    local pid rc
    wait -n -p pid
    rc=$?
    local scenario=${running[$pid]}
    unset "running[$pid]"
    if [ "$rc" -ne 0 ]; then
        failed+=("$scenario")
        local log="build/logs/molecule_${scenario//\//_}.log"
        echo "--- molecule $scenario FAILED: the last 200 lines of $log"
        tail -n 200 "$log"
        echo "--- end of molecule $scenario"
    fi
}
for scenario in "${scenarios[@]}"; do
    while [ ${#running[@]} -ge "$jobs_max" ]; do reap; done
    run_scenario "$scenario" &
    running[$!]=$scenario
done
while [ ${#running[@]} -gt 0 ]; do reap; done
if [ ${#failed[@]} -gt 0 ]; then
    echo "molecule: FAILED scenarios: ${failed[*]}"
    exit 1
fi
echo "molecule: all ${#scenarios[@]} scenarios passed"
