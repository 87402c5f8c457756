"""The firehose end to end: the real glue (a live pipeline mirroring into a firehose pipeline),
real redis-server, two real push nodes checking signed URLs (nginx/push-stream.conf), and two customers
following their channel as an EventSource does (reconnecting with Last-Event-ID)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from realtime_glue.signing import KeySet, SubscribeKey
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config
from support.push_node import PushNode

pytestmark = pytest.mark.timeout(240)

APP = SubscribeKey("app-1", b"\x21" * 32)
ACME = SubscribeKey("firehose-acme", b"\x22" * 32, ("firehose-acme",))
GLOBEX = SubscribeKey("firehose-globex", b"\x23" * 32, ("firehose-globex",))


def role_keys(*keys: SubscribeKey) -> list[dict]:
    return [
        {"id": key.id, "secret": base64.b64encode(key.secret).decode()}
        | ({"channels": list(key.channels)} if key.channels else {})
        for key in keys
    ]


class Customer(threading.Thread):
    """A customer's EventSource on its firehose URL: reconnects with Last-Event-ID after the
    stream ends, to the next node when one is gone, as a browser does; stops when refused."""

    def __init__(self, nodes: list[PushNode], path: str):
        super().__init__(daemon=True)
        self.nodes = nodes
        self.path = path
        self.events: list[tuple[str, dict]] = []
        self.last_event_id: str | None = None
        self.refused = False
        self.streams_ended = 0
        self.node = 0
        self.paused = threading.Event()
        self.stopping = False
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        while not self.stopping:
            if self.paused.is_set():
                time.sleep(0.05)
                continue
            node = self.nodes[self.node % len(self.nodes)]
            headers = {"Accept": "text/event-stream"}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            self.conn = http.client.HTTPConnection(node.host, node.port, timeout=30)
            try:
                self.conn.request("GET", self.path, headers=headers)
                response = self.conn.getresponse()
                if response.status == 403:
                    self.refused = True  # an EventSource gives up on a 403
                    return
                assert response.status == 200, response.status
                self._read(response)
            except OSError:
                self.node += 1  # that node is gone: the next one
            finally:
                self.conn.close()
            self.streams_ended += 1
            time.sleep(0.2)

    def _read(self, response) -> None:
        event_id, data = None, []
        while True:
            line = response.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                if event_id:  # a message of the glue (not push-stream's own notices)
                    self.events.append((event_id, json.loads("\n".join(data))))
                    self.last_event_id = event_id
                event_id, data = None, []

    def disconnect(self) -> None:
        """The customer's network drops until `resume()`."""
        self.paused.set()
        if self.conn is not None and self.conn.sock is not None:
            self.conn.sock.shutdown(2)

    def resume(self, node: int) -> None:
        self.node = node
        self.paused.clear()

    def ids(self) -> list[str]:
        return [event_id for event_id, _ in self.events]


@pytest.fixture
def firehose(redis_server):
    """Two push nodes holding the customers' keys, a live pipeline `comments` mirroring into
    the firehose pipeline `firehose` (customers acme and globex), both glue processes running."""
    workdir = Path(tempfile.mkdtemp(prefix="firehose-test-"))
    keys_path = workdir / "subscribe-keys.json"
    keys_path.write_text(KeySet({k.id: k for k in (APP, ACME, GLOBEX)}, ("firehose-",)).document())
    os.chmod(keys_path, 0o600)
    node_keys = {"push_stream_subscribe_keys": role_keys(APP, ACME, GLOBEX)}
    nodes = [PushNode(overrides=node_keys).start() for _ in range(2)]

    def configure(customers: list[str]) -> Path:
        pipelines = f"""
[pipelines.comments]
preset = "json-anon-http"
mirror_feed = "firehose"

[pipelines.firehose]
preset = "firehose"
[pipelines.firehose.firehose]
customers = {json.dumps(customers)}
"""
        extra = f'[subscribe]\nkeys_file = "{keys_path}"\n'
        return write_config(workdir, redis_server.url, [n.cluster_url for n in nodes], pipelines, extra)

    config = configure(["acme", "globex"])
    bed = {
        "nodes": nodes,
        "configure": configure,
        "live": GlueProcess(config, "comments").start(),
        "firehose": GlueProcess(config, "firehose").start(),
        "redis": redis_server.client(),
    }
    yield bed
    for glue in ("live", "firehose"):
        bed[glue].terminate()
    for node in nodes:
        node.cleanup()


def comments(glue: GlueProcess, start: int, count: int) -> list[str]:
    lines = [
        json.dumps(
            {
                "channel": f"article-{n % 3}",
                "event": "comment",
                "data": {"n": n, "email": f"u{n}@example.org"},
            }
        )
        for n in range(start, start + count)
    ]
    return glue.cli("enqueue", "comments", input="\n".join(lines)).stdout.split()


def url_for(glue: GlueProcess, customer: str) -> str:
    result = glue.cli("firehose", "url", "firehose", customer, "--ttl", "600")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()  # no subscribe.url: the path, the same on every node


def delivered(glue: GlueProcess) -> dict:
    result = glue.cli("firehose", "status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["customer"]: row for row in json.loads(result.stdout)}


def test_every_message_reaches_each_customer_anonymized_and_counted(firehose):
    live, nodes = firehose["live"], firehose["nodes"]
    customers = {name: Customer(nodes, url_for(live, name)) for name in ("acme", "globex")}
    for customer in customers.values():
        customer.start()
    for name in customers:
        nodes[0].wait_for_subscribers(f"firehose-{name}")
    ids = comments(live, 0, 30)
    for name, customer in customers.items():
        wait_until(lambda c=customer: len(c.events) >= 30, 30, what=f"{name} got every message")
        assert customer.ids() == ids  # every message once, in the order queued
        assert all("email" not in body["data"] for _, body in customer.events)  # after anonymize
        assert {body["channel"] for _, body in customer.events} == {"article-0", "article-1", "article-2"}
        customer.stopping = True
    # Counted once every node answered the batch, a moment after a customer saw it on one.
    wait_until(
        lambda: (
            {name: delivered(live)[name]["delivered"] for name in ("acme", "globex")}
            == {"acme": 30, "globex": 30}
        ),
        10,
        what="the deliveries counted",
    )
    counts = delivered(live)
    assert {row["state"] for row in counts.values()} == {"active"}


def test_a_customer_reconnecting_with_last_event_id_gets_what_it_missed_on_another_node(firehose):
    live, nodes = firehose["live"], firehose["nodes"]
    acme = Customer(nodes, url_for(live, "acme"))
    acme.start()
    nodes[0].wait_for_subscribers("firehose-acme")
    first = comments(live, 0, 5)
    wait_until(lambda: len(acme.events) == 5, 30, what="the first five")
    acme.disconnect()
    missed = comments(live, 5, 5)
    wait_until(
        lambda: feed_counts(firehose["redis"], "firehose")["finishes"] == 10,
        30,
        what="the firehose published",
    )
    acme.resume(node=1)  # back, on the other node, with the same URL and its Last-Event-ID
    wait_until(lambda: len(acme.events) == 10, 30, what="what acme missed")
    acme.stopping = True
    assert acme.ids() == first + missed


def test_a_revoked_customer_is_cut_off_and_the_other_carries_on(firehose):
    live, nodes = firehose["live"], firehose["nodes"]
    acme = Customer(nodes, url_for(live, "acme"))
    globex = Customer(nodes, url_for(live, "globex"))
    for customer in (acme, globex):
        customer.start()
    nodes[0].wait_for_subscribers("firehose-acme")
    nodes[0].wait_for_subscribers("firehose-globex")
    before = comments(live, 0, 20)
    wait_until(lambda: len(acme.events) == 20 and len(globex.events) == 20, 30, what="both got the first 20")

    # Revoke globex as the roles do. It leaves the firehose pipeline, which at its start
    # closes globex's channel on every node: the open stream ends ...
    config = firehose["configure"](["acme"])
    assert firehose["firehose"].terminate() == 0
    firehose["firehose"] = GlueProcess(config, "firehose").start()
    wait_until(lambda: globex.streams_ended >= 1, 30, what="globex's stream ended")
    log = firehose["firehose"].log()
    for node in nodes:
        label = f"{node.host}:{node.cluster_port}"
        assert (
            f"customer globex was removed: channel firehose-globex closed, its streams ended on {label}"
            in log
        )
    # (Its URL is still good: it reconnects, to a channel nothing is published to any more.)
    nodes[0].wait_for_subscribers("firehose-globex")
    # ... and its key leaves every node (a reload): its reconnect is refused.
    for node in nodes:
        node.write_key_set(role_keys(APP, ACME))
        node.reload()
    wait_until(lambda: globex.refused, 30, what="globex refused on reconnect")
    globex.join(10)  # it gives up: no reconnecting after a 403
    assert not globex.is_alive()

    after = comments(live, 20, 20)
    wait_until(lambda: len(acme.events) >= 40, 30, what="acme got the next 20")
    acme.stopping = True
    assert acme.ids() == before + after  # through the reload: reconnected, nothing missed or twice
    assert globex.ids() == before
    for node in nodes:
        assert node.subscribers("firehose-globex") == 0

    wait_until(lambda: delivered(live)["acme"]["delivered"] == 40, 10, what="acme's deliveries counted")
    counts = delivered(live)
    assert counts["globex"]["delivered"] == 20
    assert counts["globex"]["state"] == "removed"
    refused = live.cli("firehose", "url", "firehose", "globex")
    assert refused.returncode == 1
    assert "'globex' is not a customer of pipelines.firehose (customers: acme)" in refused.stderr
