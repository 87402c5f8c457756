"""Fixtures with real servers: redis-server and nginx (push-stream or nchan) on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.push_node import MODULES, PushNode, default_flavour, missing_module
from support.redis_server import RedisServer


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "long_outage: a real outage of several minutes (select with -m long_outage, skip with "
        "-m 'not long_outage'); part of make integration",
    )


def pytest_report_header(config):
    flavour = default_flavour()
    return f"push node flavour: {flavour} ({MODULES[flavour]})"


def pytest_sessionstart(session):
    """No push node can start without its module: say so once, up front, and fail
    (the tests do not fall back to another flavour)."""
    if why := missing_module(default_flavour()):
        raise pytest.UsageError(why)


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_aof():
    server = RedisServer(appendonly=True).start()
    yield server
    server.cleanup()


@pytest.fixture
def push_node():
    node = PushNode()
    node.start()
    yield node
    node.stop()
    node.cleanup()


@pytest.fixture
def push_nodes():
    nodes = [PushNode().start() for _ in range(2)]
    yield nodes
    for node in nodes:
        node.stop()
        node.cleanup()
