#!/bin/bash
# `make cluster-test`: tests/cluster against the Vagrant test cluster. A cluster
# that runs (`make up`) is used as it is; otherwise one is brought up for the
# tests and destroyed afterwards (KEEP_CLUSTER=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/../.."

tests/scripts/docker-engine.sh start >/dev/null
states=$(vagrant status --machine-readable | awk -F, '$3 == "state" {print $4}' | sort -u)
inventory=.vagrant/provisioners/ansible/inventory/vagrant_ansible_inventory
if [ "$states" = running ] && [ -s "$inventory" ]; then
    echo "cluster-test: using the running cluster"
else
    echo "cluster-test: bringing the cluster up for the tests"
    if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
        trap 'echo "cluster-test: destroying the cluster"; vagrant destroy -f' EXIT
    fi
    vagrant up --provider=docker --no-parallel --provision
fi
# Rolling restarts run ansible-playbook against the same inventory.
export ANSIBLE_HOST_KEY_CHECKING=False
python -m pytest -p no:cacheprovider -rs tests/cluster "$@"
