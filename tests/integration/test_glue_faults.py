"""Fault tests with real processes: kill -9 the glue, stop nginx, restart Redis. Nothing is lost."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from support.glue_process import DEBIAN_PYTHON, GlueProcess, feed_counts, wait_until, write_config
from support.ports import free_port

CONCURRENCY = 32


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-faults-"))


class Collector:
    """An EventSource subscriber in a thread that, like a browser, reconnects with
    Last-Event-ID when its node goes away."""

    def __init__(self, node, channel: str):
        self.node = node
        self.channel = channel
        self.ids: list[str] = []
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.last_event_id: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.node.events(self.channel, self.last_event_id, timeout=60) as events:
                    self.connected.set()
                    while not self.stop.is_set():
                        event = events.next_event()
                        self.ids.append(json.loads(event.data)["id"])
                        self.last_event_id = event.id
            except Exception:
                self.connected.clear()
                time.sleep(0.1)

    def unique(self) -> set[str]:
        return set(self.ids)

    def close(self) -> None:
        self.stop.set()  # the thread is a daemon: it ends with its stream


def pipeline_toml() -> str:
    return f'[pipelines.comments]\npreset = "json-anon-http"\nconcurrency = {CONCURRENCY}\n'


def comment(n: int, channel: str = "faults") -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"n": n}})


def test_kill_9_twenty_times_while_publishing_10000_jobs_loses_none(workdir, redis_server, push_node):
    # Each kill counts as a failure of the jobs in flight; allow enough that none is stalled.
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipeline_toml(), extra="")
    config.write_text(config.read_text().replace("max_failures = 5", "max_failures = 100"))
    feed = JobFeed(redis_server.client(), "comments")
    collector = Collector(push_node, "faults")
    push_node.wait_for_subscribers("faults")
    expected: list[str] = []

    def produce():
        for start in range(0, 10_000, 250):
            expected.extend(feed.put_many([comment(n) for n in range(start, start + 250)]))
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    glue = GlueProcess(config, "comments")
    rng = random.Random(7)
    for _ in range(20):
        glue.start()
        time.sleep(rng.uniform(0.1, 0.5))
        os.kill(glue.process.pid, signal.SIGKILL)
        glue.process.wait(10)
        glue.process = None
    producer.join()
    glue.start()
    try:
        wait_until(lambda: len(collector.unique()) >= 10_000, timeout=120, interval=0.2, what="all messages")
        # The killed instances' last claims come back after a visibility timeout and are sent
        # again: wait for the feed to settle, not only for every message to have been seen once.
        wait_until(
            lambda: (
                not (counts := feed_counts(redis_server.client(), "comments"))["claimed"]
                and not counts["ready"]
            ),
            timeout=60,
            interval=0.2,
            what="every claim finished",
        )
    finally:
        glue.terminate()
        collector.close()
    assert collector.unique() == set(expected)
    duplicates = len(collector.ids) - len(collector.unique())
    print(f"10000 jobs, 20 kills: {duplicates} duplicate deliveries (bound {20 * CONCURRENCY})")
    assert duplicates <= 20 * CONCURRENCY
    assert feed_counts(redis_server.client(), "comments")["stalled"] == 0


def test_a_hung_push_node_for_10s_backlogs_then_delivers_everything(workdir, redis_server, push_node):
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipeline_toml())
    glue = GlueProcess(config, "comments").start()
    feed = JobFeed(redis_server.client(), "comments")
    collector = Collector(push_node, "faults")
    push_node.wait_for_subscribers("faults")
    try:
        before = feed.put_many([comment(n) for n in range(100)])
        wait_until(lambda: len(collector.unique()) == 100, 20, what="first 100")
        os.kill(push_node.pid, signal.SIGSTOP)  # the node hangs: no answer, no refusal
        for pid in _worker_pids(push_node.pid):
            os.kill(pid, signal.SIGSTOP)
        during = []
        for n in range(100, 300, 20):
            during += feed.put_many([comment(i) for i in range(n, n + 20)])
            time.sleep(1)
        # Every job finished: its message is held in the node's backlog, in Redis.
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["finishes"] == 300, 30)
        status = json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]
        held = status["backlog"][f"127.0.0.1:{push_node.cluster_port}"]
        print(f"held in the backlog while the node hung: {held}")
        assert held > 0
        for pid in [push_node.pid, *_worker_pids(push_node.pid)]:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: len(collector.unique()) == 300, 60, interval=0.2, what="backlog drained")
        assert collector.unique() == set(before + during)
        wait_until(
            lambda: (
                json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]["backlog"]
                == {f"127.0.0.1:{push_node.cluster_port}": 0}
            ),
            30,
            what="empty backlog",
        )
    finally:
        glue.terminate()
        collector.close()


def test_a_stopped_push_node_gets_its_backlog_when_it_returns(workdir, redis_server, push_node):
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipeline_toml())
    glue = GlueProcess(config, "comments").start()
    feed = JobFeed(redis_server.client(), "comments")
    node_label = f"127.0.0.1:{push_node.cluster_port}"

    def backlog_depth():
        return json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]["backlog"][node_label]

    try:
        push_node.stop()
        feed.put_many([comment(n, channel="outage") for n in range(15)])
        wait_until(lambda: backlog_depth() == 15, 30, what="15 messages in the backlog")
        time.sleep(10)  # the node stays down for 10 s; nothing moves, nothing is lost
        assert backlog_depth() == 15
        push_node.start()
        wait_until(lambda: backlog_depth() == 0, 60, interval=0.5, what="backlog drained")
        assert _stored_messages(push_node, "outage") == 15
    finally:
        glue.terminate()


def test_redis_restart_with_aof_the_glue_reconnects_and_carries_on(workdir, redis_aof, push_node):
    config = write_config(workdir, redis_aof.url, [push_node.cluster_url], pipeline_toml())
    glue = GlueProcess(config, "comments").start()
    collector = Collector(push_node, "faults")
    push_node.wait_for_subscribers("faults")
    try:
        first = JobFeed(redis_aof.client(), "comments").put_many([comment(n) for n in range(50)])
        wait_until(lambda: len(collector.unique()) == 50, 20)
        redis_aof.stop()
        time.sleep(2)
        redis_aof.start()
        second = JobFeed(redis_aof.client(), "comments").put_many([comment(n) for n in range(50, 100)])
        wait_until(lambda: len(collector.unique()) == 100, 60, interval=0.2, what="jobs after the restart")
        assert collector.unique() == set(first + second)
        assert glue.alive()
        # The node's backlog drainer (idle in Redis while Redis went away) still works.
        node_label = f"127.0.0.1:{push_node.cluster_port}"

        def backlog_depth():
            return json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]["backlog"][node_label]

        push_node.stop()
        JobFeed(redis_aof.client(), "comments").put_many([comment(n, channel="after") for n in range(5)])
        wait_until(lambda: backlog_depth() == 5, 30, what="5 messages in the backlog")
        push_node.start()
        wait_until(
            lambda: backlog_depth() == 0, 60, interval=0.5, what="backlog drained after the Redis restart"
        )
        assert _stored_messages(push_node, "after") == 5
    finally:
        glue.terminate()
        collector.close()


def _redis_timeouts(log: str, part: str) -> list[str]:
    return [line for line in log.splitlines() if part in line and "Timeout" in line]


def _worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _stored_messages(node, channel: str) -> int:
    if node.flavour == "push_stream":
        _, _, body = node.request("GET", f"/channels-stats?id={channel}", listener="cluster")
        return int(json.loads(body)["published_messages"])
    _, _, body = node.request(
        "GET", f"/pub?id={channel}", headers={"Accept": "application/json"}, listener="cluster"
    )
    return int(json.loads(body)["messages"])


def test_a_hung_redis_is_noticed_and_the_glue_carries_on_after(workdir, redis_server, push_node):
    """redis-server stopped with SIGSTOP accepts connections and never answers. The glue runs on
    Debian's python3-redis 4.3, as the package does (newer redis-py happens to time out some
    commands on a connection that served a blocking wait, which hides the missing timeout)."""
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipeline_toml())
    glue = GlueProcess(config, "comments", python=DEBIAN_PYTHON).start()
    collector = Collector(push_node, "faults")
    push_node.wait_for_subscribers("faults")
    try:
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # [redis] timeout: 5 s by default
        try:
            # Every loop notices, not only the blocking waits (redis-py 5+ times those out
            # itself): the heartbeat's plain ZADD hung forever without a socket timeout.
            wait_until(
                lambda: _redis_timeouts(glue.log(), "heartbeat"),
                30,
                interval=0.5,
                what="the heartbeat to log that Redis does not answer",
            )
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        print(_redis_timeouts(glue.log(), "")[:3])
        ids = JobFeed(redis_server.client(), "comments").put_many([comment(n) for n in range(20)])
        wait_until(lambda: collector.unique() >= set(ids), 60, interval=0.2, what="jobs after Redis answers")
        assert glue.alive()
    finally:
        glue.terminate()
        collector.close()


def test_a_long_node_outage_keeps_its_backlog_bounded_by_age_and_size(workdir, redis_server, push_node):
    metrics_port = free_port()
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipeline_toml())
    config.write_text(
        config.read_text()
        .replace("timeout = 2.0\n", "timeout = 2.0\nmessage_ttl = 30\nbacklog_limit = 5\n")
        .replace('listen = ""', f'listen = "127.0.0.1:{metrics_port}"')
    )
    glue = GlueProcess(config, "comments").start()
    node_label = f"127.0.0.1:{push_node.cluster_port}"

    def status():
        return json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]

    try:
        push_node.stop()
        JobFeed(redis_server.client(), "comments").put_many([comment(n, channel="down") for n in range(8)])
        wait_until(lambda: status()["backlog_dropped"][node_label]["full"] == 3, 30, what="3 over the limit")
        assert status()["backlog"][node_label] == 5
        assert (
            f"backlog {node_label}: 5  FULL: dropping the oldest"
            in glue.cli("status", "--sample", "0").stdout
        )
        assert "is FULL (5 messages): dropping the oldest" in glue.log()
        # The node stays down past its message TTL: it could not serve them any more.
        wait_until(
            lambda: status()["backlog"][node_label] == 0, 120, interval=0.5, what="expired records dropped"
        )
        assert status()["backlog_dropped"][node_label] == {"expired": 5, "full": 3}
        # One line or a few: records held in writes milliseconds apart may expire in two trims.
        assert re.search(r"dropped \d+ messages held longer than the node's message TTL", glue.log())
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        )
        assert f'glue_backlog_dropped_total{{node="{node_label}",reason="expired"}} 5.0' in metrics
        assert f'glue_backlog_dropped_total{{node="{node_label}",reason="full"}} 3.0' in metrics
        # Back again: new messages flow, nothing stale is replayed.
        push_node.start()
        with push_node.events("down") as events:
            push_node.wait_for_subscribers("down")
            (new,) = JobFeed(redis_server.client(), "comments").put_many([comment(99, channel="down")])
            assert json.loads(events.next_event().data)["id"] == new
    finally:
        glue.terminate()
