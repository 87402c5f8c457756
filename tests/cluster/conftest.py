"""The cluster tests run against a running test cluster (`make up`, or
`make cluster-test`, which brings one up when none runs): its hosts come from
the Ansible inventory Vagrant generated (CLUSTER_INVENTORY names another)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.cluster import Cluster, inventory_path


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    path = inventory_path()
    if not path.exists():
        pytest.skip(f"no test cluster: {path} is missing (run `make up` or `make cluster-test`)")
    return Cluster(path)


@pytest.fixture(scope="session")
def push_nodes(cluster):
    nodes = cluster.push_nodes()
    print(f"push node flavour: {nodes[0].flavour}")
    return nodes


@pytest.fixture
def channel() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"
