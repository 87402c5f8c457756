#!/bin/bash
# `make down`: destroys the Vagrant test cluster (containers; Vagrant removes the
# network it created with the last one). REMOVE_IMAGES=1 also removes the
# cluster node image. The docker engine is left running: stop it with
# `tests/scripts/docker-engine.sh stop` (only if that script started it).
set -euo pipefail
cd "$(dirname "$0")/../.."

if docker info >/dev/null 2>&1; then
    vagrant destroy -f
    # The cluster's network, when an interrupted run left it without containers.
    network="vagrant_network_${REALTIME_GLUE_CLUSTER_NET:-172.30.210}.0/24"
    if [ "$(docker network inspect -f '{{len .Containers}}' "$network" 2>/dev/null)" = 0 ]; then
        docker network rm "$network" >/dev/null && echo "cluster-down: removed network $network"
    fi
    if [ "${REMOVE_IMAGES:-0}" = 1 ]; then
        docker image rm "${REALTIME_GLUE_CLUSTER_IMAGE:-realtime-glue/vagrant-node:bookworm}" || true
    fi
else
    echo "cluster-down: no docker engine answers; nothing to destroy"
fi
