"""Reader counts across nodes: the real `realtime-glue readers` over two real push nodes.

Browsers are EventSource subscribers spread over both nodes; what a page would read
is the readers channel (itself an EventSource subscription on a node), and what
Prometheus would scrape is the unit's metrics endpoint.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from support.glue_process import DEBIAN_PYTHON, GlueProcess, wait_until, write_config
from support.ports import free_port

pytestmark = pytest.mark.timeout(120)


def readers_config(redis_server, nodes, metrics_port: int, extra: str = "") -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="glue-readers-"))
    table = f"""
[readers]
interval = 0.2
snapshot_interval = 2
timeout = 1
metrics_listen = "127.0.0.1:{metrics_port}"
{extra}
"""
    return write_config(workdir, redis_server.url, [n.cluster_url for n in nodes], "", extra=table)


def readers_process(config: Path, python: str = sys.executable) -> GlueProcess:
    return GlueProcess(config, "readers", python=python, run_args=("readers",))


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        name: float(value) for name, value in re.findall(r"^(glue_readers\S*) (\S+)$", text, re.MULTILINE)
    }


class ReadersPage:
    """What a page knows from the readers channel: the counts, applied as the messages say."""

    def __init__(self, node):
        self.stream = node.events("readers", timeout=15)
        self.readers: dict[str, int] = {}
        self.last: dict = {}

    def wait_for(self, expected: dict[str, int], timeout: float = 20, answered: int | None = None) -> dict:
        """The last message once the counts are `expected` (and, if given, `answered` nodes
        answered the round that made them)."""
        deadline = time.monotonic() + timeout
        while self.readers != expected or answered not in (None, self.last.get("answered")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"readers channel says {self.readers}, expected {expected}")
            event = self.stream.next_event()
            body = json.loads(event.data)
            assert body["channel"] == "readers" and body["event"] == "readers" and body["id"] == event.id
            self.last = data = body["data"]
            if data["full"] and data["part"] == 1:
                self.readers = {}
            self.readers.update(data["readers"])
            self.readers = {channel: n for channel, n in self.readers.items() if n}
        return self.last

    def close(self):
        self.stream.close()


@pytest.fixture
def browsers():
    opened = []

    def subscribe(node, channel):
        stream = node.events(channel)
        opened.append(stream)
        return stream

    yield subscribe
    for stream in opened:
        stream.close()


def test_readers_are_summed_over_both_nodes_published_as_they_change_and_exported(
    redis_server, push_nodes, browsers
):
    push1, push2 = push_nodes
    demo_on_1 = [browsers(push1, "demo") for _ in range(2)]
    browsers(push2, "demo")
    news = browsers(push2, "news")
    push1.wait_for_subscribers("demo", 2)
    push2.wait_for_subscribers("news", 1)
    page = ReadersPage(push2)  # subscribed to the readers channel: never counted itself

    port = free_port()
    glue = readers_process(readers_config(redis_server, push_nodes, port)).start()
    try:
        snapshot = page.wait_for({"demo": 3, "news": 1})
        assert snapshot["nodes"] == 2 and snapshot["answered"] == 2 and snapshot["total"] == 4
        scraped = metrics(port)
        assert scraped['glue_readers{channel="demo"}'] == 3
        assert scraped['glue_readers{channel="news"}'] == 1
        assert scraped["glue_readers_total"] == 4 and scraped["glue_readers_channels"] == 2
        assert scraped[f'glue_readers_node{{node="{push1.host}:{push1.cluster_port}"}}'] == 2
        assert scraped["glue_readers_publishing"] == 1

        # A reader leaves on one node, the last reader of news on the other.
        demo_on_1[0].close()
        news.close()
        change = page.wait_for({"demo": 2})
        assert change["readers"].get("news", 0) == 0
        wait_until(lambda: 'glue_readers{channel="news"}' not in metrics(port), 10, what="news's series gone")

        # The same messages reach a page reading the other node, same ids.
        other = ReadersPage(push1)
        other.wait_for({"demo": 2})  # at the next full snapshot at the latest

        # A node that goes away counts nothing; the unit says which.
        push1.stop()  # while it stops it may still answer a round with its readers gone
        down = page.wait_for({"demo": 1}, answered=1)
        assert down["nodes"] == 2
        node_up = f'glue_readers_node_up{{node="{push1.host}:{push1.cluster_port}"}}'
        wait_until(lambda: metrics(port)[node_up] == 0, 10, what="push1 counted down")
        assert "cannot read its readers" in glue.log()
        other.close()
    finally:
        page.close()
        assert glue.terminate() == 0


def test_one_of_two_readers_units_publishes_and_the_other_takes_over_when_it_dies(
    redis_server, push_nodes, browsers
):
    push1, push2 = push_nodes
    browsers(push1, "demo")
    push1.wait_for_subscribers("demo")
    ports = [free_port(), free_port()]
    # One on the venv's libraries, one on Debian's python3-* (redis-py 4.3's Lock), as the .deb runs.
    units = [
        readers_process(readers_config(redis_server, push_nodes, port), python).start()
        for port, python in zip(ports, (sys.executable, DEBIAN_PYTHON), strict=True)
    ]
    try:
        publishing = wait_until(
            lambda: (
                [metrics(port).get("glue_readers_publishing") for port in ports] in ([1, 0], [0, 1])
                and [metrics(port)["glue_readers_publishing"] for port in ports]
            ),
            20,
            what="exactly one unit publishing",
        )
        leader = publishing.index(1)
        page = ReadersPage(push2)
        page.wait_for({"demo": 1})

        units[leader].kill()  # no release: the lease must expire
        follower = 1 - leader
        wait_until(lambda: metrics(ports[follower])["glue_readers_publishing"] == 1, 20, what="take-over")
        browsers(push2, "demo")
        first = page.wait_for({"demo": 2})
        assert first["answered"] == 2
    finally:
        for unit in units:
            unit.terminate()


def test_readers_once_prints_the_counts(redis_server, push_nodes, browsers):
    push1, push2 = push_nodes
    browsers(push1, "demo")
    browsers(push2, "demo")
    push1.wait_for_subscribers("demo")
    push2.wait_for_subscribers("demo")
    glue = readers_process(readers_config(redis_server, push_nodes, free_port()))
    done = glue.cli("readers", "--once")
    assert done.returncode == 0, done.stderr
    counted = json.loads(done.stdout)
    assert counted["readers"] == {"demo": 2} and counted["total"] == 2
    assert set(counted["nodes"].values()) == {"ok"}


def test_a_config_without_push_nodes_is_a_config_error(tmp_path):
    config = tmp_path / "glue.toml"
    config.write_text("[metrics]\nlisten = ''\n")
    done = subprocess.run(
        [*readers_process(config).command("readers")], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 78
    assert "readers.nodes: no push node to read" in done.stderr
