#!/bin/bash
# `make molecule`: runs `molecule test` for every scenario under
# ansible/roles/*/molecule/*/, one after the other, prints how long each took,
# carries on past a failure and exits non-zero if any failed.
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

failed=()
for scenario in "${scenarios[@]}"; do
    role=${scenario%%/*}
    name=${scenario#*/}
    # ROLE_UNDER_TEST names the container (see the base config).
    tests/scripts/timed "molecule $scenario" \
        env -C "ansible/roles/$role" ROLE_UNDER_TEST="$role" \
        molecule --base-config "$base_config" test --scenario-name "$name" \
        || failed+=("$scenario")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "molecule: FAILED scenarios: ${failed[*]}"
    exit 1
fi
echo "molecule: all ${#scenarios[@]} scenarios passed"
