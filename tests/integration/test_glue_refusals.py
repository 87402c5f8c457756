"""Push nodes that refuse: a permanent refusal (4xx) is dead-lettered for that node while later
messages flow; a failure (5xx, no connection) is retried record by record, in order, and no
subscriber gets a message twice from a retry. Real nginx, real glue, real Redis."""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from support.faulty_node import FaultyNode
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config
from support.ports import free_port
from support.push_node import PushNode


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-refusals-"))


@pytest.fixture
def small_node():
    """A push node that takes messages of at most 16 KiB (the glue allows 64 KiB)."""
    node = PushNode(overrides={"push_stream_max_message_size": "16k"}).start()
    yield node
    node.cleanup()


class Subscriber:
    """An EventSource subscriber in a thread, recording the `n` of every message in order."""

    def __init__(self, node: PushNode, channel: str):
        self.received: list[int] = []
        self._stream = node.events(channel, timeout=120)
        node.wait_for_subscribers(channel)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                self.received.append(json.loads(self._stream.next_event().data)["data"]["n"])
        except Exception:
            return

    def close(self) -> None:
        self._stream.close()


def message(n: int, channel: str = "refusals", size: int = 0) -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"n": n, "pad": "x" * size}})


def status_of(glue: GlueProcess) -> dict:
    return json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]


def stored_messages(node: PushNode, channel: str) -> int:
    """Messages the node holds for the channel (0 for a channel it does not know)."""
    if node.flavour == "push_stream":
        status, _, body = node.request("GET", f"/channels-stats?id={channel}")
        key = "published_messages"
    else:
        status, _, body = node.request("GET", f"/pub?id={channel}", headers={"Accept": "application/json"})
        key = "messages"
    return 0 if status == 404 else int(json.loads(body)[key])


def metric(port: int, name: str, labels: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found = re.search(rf"^{name}{{{labels}}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_a_message_one_node_refuses_for_good_is_dead_lettered_there_and_later_ones_flow(
    workdir, redis_server, push_node, small_node
):
    metrics_port = free_port()
    config = write_config(
        workdir,
        redis_server.url,
        [push_node.base_url, small_node.base_url],
        '[pipelines.comments]\npreset = "json-anon-http"\n',
    )
    config.write_text(config.read_text().replace('listen = ""', f'listen = "127.0.0.1:{metrics_port}"'))
    glue = GlueProcess(config, "comments").start()
    big, small = Subscriber(push_node, "refusals"), Subscriber(small_node, "refusals")
    feed = JobFeed(redis_server.client(), "comments")
    refused_label = f"127.0.0.1:{small_node.port}"
    try:
        # One batch: 20 KB (over the small node's 16 KiB) in the middle of small messages.
        feed.put_many([message(n, size=20_000 if n == 3 else 0) for n in range(10)])
        wait_until(lambda: len(big.received) == 10, 30, what="every message on the big node")
        wait_until(lambda: len(small.received) == 9, 30, what="every other message on the small node")
        assert big.received == list(range(10))
        assert small.received == [0, 1, 2, 4, 5, 6, 7, 8, 9]
        # The refusal did not make the small node "failing": it has no backlog, later messages
        # go straight to it.
        status = status_of(glue)
        assert status["backlog"][refused_label] == 0
        assert status["dead_letters"] == {f"127.0.0.1:{push_node.port}": 0, refused_label: 1}
        feed.put_many([message(n) for n in range(10, 20)])
        wait_until(lambda: len(small.received) == 19, 30, what="later messages on the small node")
        assert small.received[9:] == list(range(10, 20))
        assert status_of(glue)["backlog"][refused_label] == 0
        # The operator sees why, with the node's answer.
        listing = glue.cli("stalled", "comments")
        assert listing.returncode == 0
        assert f"node {refused_label}:" in listing.stdout
        assert "HTTP 413" in listing.stdout and "Request Entity Too Large" in listing.stdout
        dead = json.loads(glue.cli("stalled", "comments", "--json").stdout)
        assert [(d["node"], d["reason"][:8]) for d in dead] == [(refused_label, "HTTP 413")]
        assert metric(metrics_port, "glue_node_dead_letters_total", f'node="{refused_label}"') == 1.0
        assert f"backlog {refused_label}: 0  dead letters 1" in glue.cli("status", "--sample", "0").stdout
        assert feed_counts(redis_server.client(), "comments")["finishes"] == 20
        # The operator raises the node's limit (a reload: subscribers stay with the old workers,
        # so the node's own count shows the delivery) and sends the dead letter again.
        small_node.overrides["push_stream_max_message_size"] = "64k"
        small_node.reload()
        wait_until(
            lambda: small_node.publish("probe", "x" * 20_000) != 413, 30, what="the reload took effect"
        )
        stored = stored_messages(small_node, "refusals")
        retried = glue.cli("retry", "comments", "--node", refused_label, "--all")
        assert retried.returncode == 0, retried.stderr
        wait_until(
            lambda: stored_messages(small_node, "refusals") == stored + 1,
            30,
            what="the dead letter delivered",
        )
        assert status_of(glue)["dead_letters"][refused_label] == 0
    finally:
        glue.terminate()
        big.close()
        small.close()


def test_a_message_every_node_refuses_stalls_the_job_with_the_answer(workdir, redis_server, small_node):
    config = write_config(
        workdir, redis_server.url, [small_node.base_url], '[pipelines.comments]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "comments").start()
    subscriber = Subscriber(small_node, "refusals")
    feed = JobFeed(redis_server.client(), "comments")
    try:
        ids = feed.put_many([message(n, size=20_000 if n == 1 else 0) for n in range(4)])
        wait_until(lambda: len(subscriber.received) == 3, 30, what="the messages the node takes")
        assert subscriber.received == [0, 2, 3]
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["stalled"] == 1, 10)
        reason = feed.stalled_jobs()[ids[1]]
        assert "HTTP 413" in reason
        assert status_of(glue)["backlog"] == {f"127.0.0.1:{small_node.port}": 0}
    finally:
        glue.terminate()
        subscriber.close()


def test_a_failing_node_gets_each_held_message_once_in_order(workdir, redis_server, push_node):
    """The node is away while 40 messages are published (they wait in its backlog), then comes
    back answering 500 to some of them twice: the backlog retries those records only, in order."""
    failures = Counter()

    def answer_500_twice(path: str, body: bytes) -> int | None:
        n = json.loads(body)["data"]["n"]
        if n % 7 == 3 and failures[n] < 2:
            failures[n] += 1
            return 500
        return None

    faulty = FaultyNode(push_node.port, rule=answer_500_twice)
    faulty.down = True
    config = write_config(
        workdir, redis_server.url, [faulty.base_url], '[pipelines.comments]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "comments").start()
    subscriber = Subscriber(push_node, "refusals")
    feed = JobFeed(redis_server.client(), "comments")
    label = f"127.0.0.1:{faulty.port}"
    try:
        for start in range(0, 40, 10):  # four batches
            feed.put_many([message(n) for n in range(start, start + 10)])
            time.sleep(0.2)
        wait_until(lambda: status_of(glue)["backlog"][label] == 40, 30, what="40 messages held")
        faulty.down = False
        wait_until(lambda: status_of(glue)["backlog"][label] == 0, 90, interval=0.5, what="backlog drained")
        wait_until(lambda: len(subscriber.received) >= 40, 30, what="40 messages on the node")
        assert subscriber.received == list(range(40))  # each once, in order
        forwarded = [json.loads(body)["data"]["n"] for body in faulty.forwarded]
        assert forwarded == list(range(40))  # the node got every record once: no re-send of a delivered one
        assert sorted(failures) == [3, 10, 17, 24, 31, 38] and set(failures.values()) == {2}
    finally:
        glue.terminate()
        subscriber.close()
        faulty.close()
