#!/bin/bash
# Installs the Debian packages listed in the given files (skips what is installed).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
mapfile -t wanted < <(grep -hv '^\s*#' "$@" | awk 'NF {print $1}' | sort -u)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "apt: all ${#wanted[@]} packages present"
    exit 0
fi
echo "apt: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
