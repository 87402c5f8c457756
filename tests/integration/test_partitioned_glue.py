"""Several real glue instances on one partitioned feed: they share the partitions, a channel's
messages keep one order on every push node, and an instance that dies or stops hands over.

Real redis-server, two real push-stream nodes, real `realtime-glue run` processes;
EventSource subscribers on both nodes record what each node delivered.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from realtime_glue.lease import lease_holder
from realtime_glue.partitions import PartitionedFeed, partition_feed_names, partition_of
from support.event_collector import ChannelCollectors
from support.faulty_node import FaultyNode
from support.glue_process import DEBIAN_PYTHON, GlueProcess, feed_counts, wait_until, write_config

PARTITIONS = 8
CONCURRENCY = 32
CHANNELS = [f"article-{n}" for n in range(12)]
FEEDS = partition_feed_names("comments", PARTITIONS)


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-partitions-"))


def config_for(workdir, redis_server, nodes, visibility_timeout: float = 3) -> Path:
    pipelines = (
        f'[pipelines.comments]\npreset = "json-anon-http"\nconcurrency = {CONCURRENCY}\n'
        f"partitions = {PARTITIONS}\n"
    )
    config = write_config(workdir, redis_server.url, [n.cluster_url for n in nodes], pipelines)
    text = config.read_text().replace("visibility_timeout = 3", f"visibility_timeout = {visibility_timeout}")
    # A kill counts as a failure of the jobs in flight: none may be stalled for it.
    config.write_text(text.replace("max_failures = 5", "max_failures = 100"))
    return config


def comment(channel: str, n: int) -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"n": n}})


def holders(client) -> dict[str, str | None]:
    """Each partition's lease holder: the pid of the glue process holding it."""
    out = {}
    for feed in FEEDS:
        owner = lease_holder(client, feed)
        out[feed] = owner.split(":")[1] if owner else None
    return out


def held_by(client, glue: GlueProcess) -> list[str]:
    pid = str(glue.process.pid)
    return [feed for feed, holder in holders(client).items() if holder == pid]


def shared_by(client, glues: list[GlueProcess]) -> bool:
    """Every partition held, each by one of `glues`, none holding more than its fair share."""
    pids = {str(g.process.pid) for g in glues}
    held = holders(client)
    share = -(-PARTITIONS // len(glues))
    counts = [list(held.values()).count(pid) for pid in pids]
    return set(held.values()) == pids and max(counts) <= share


def freeze_holding_claims(client, glue: GlueProcess, held: list[str]) -> bool:
    """Stop the process; True (left stopped) if it holds claims in `held`, else it goes on."""
    os.kill(glue.process.pid, signal.SIGSTOP)
    if sum(client.zcard(f"feed.claimed:{feed}") for feed in held):
        return True
    os.kill(glue.process.pid, signal.SIGCONT)
    time.sleep(0.003)
    return False


class Producer:
    """Puts `per_channel` jobs on every channel, interleaved, in rounds, as PartitionedFeed does."""

    def __init__(self, client, per_channel: int, round_size: int = 10, pause: float = 0.05):
        self.feed = PartitionedFeed(client, "comments", PARTITIONS)
        self.per_channel = per_channel
        self.round_size = round_size
        self.pause = pause
        self.put = 0
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        for start in range(0, self.per_channel, self.round_size):
            numbers = range(start, min(self.per_channel, start + self.round_size))
            self.feed.put_many([comment(c, n) for n in numbers for c in CHANNELS])
            self.put += len(numbers) * len(CHANNELS)
            time.sleep(self.pause)

    def join(self) -> None:
        self.thread.join()


def assert_every_channel_in_put_order_on_both_nodes(collectors, per_channel: int) -> None:
    for channel in CHANNELS:
        orders = [[m["data"]["n"] for m in c.first_seen(channel)] for c in collectors]
        assert orders[0] == list(range(per_channel)), f"{channel} on node 1 out of put order"
        assert orders[1] == orders[0], f"{channel}: the nodes differ"
        ids = [[m["id"] for m in c.first_seen(channel)] for c in collectors]
        assert ids[0] == ids[1]


def stop(glues: list[GlueProcess], collectors: list[ChannelCollectors]) -> None:
    """A test's end: the instances still running stopped, the subscribers closed."""
    for glue in glues:
        if glue.alive():
            glue.terminate()
    for c in collectors:
        c.close()


def assert_feeds_empty(client, timeout: float = 10) -> None:
    """Nothing ready, claimed or stalled on any partition. A job is finished once its message
    is on the nodes, so the last finishes follow the last message a moment later (0.1 s seen
    under load): they get `timeout` seconds."""

    def left() -> list[tuple[str, dict]]:
        counts = [(feed, feed_counts(client, feed)) for feed in FEEDS]
        return [(feed, c) for feed, c in counts if c["ready"] or c["claimed"] or c["stalled"]]

    try:
        wait_until(lambda: not left(), timeout=timeout, interval=0.05, what="every job finished")
    except TimeoutError:
        pass
    assert left() == []


# Also on Debian's python3-* packages (redis-py 4.3, gevent 22.10), what the .deb runs on.
@pytest.mark.parametrize("python", [sys.executable, DEBIAN_PYTHON], ids=["venv", "debian"])
def test_three_instances_one_killed_keep_each_channels_order_on_both_nodes(
    workdir, redis_server, push_nodes, python
):
    client = redis_server.client()
    config = config_for(workdir, redis_server, push_nodes)
    collectors = [ChannelCollectors(node, CHANNELS) for node in push_nodes]
    glues = [GlueProcess(config, "comments", python=python).start() for _ in range(3)]
    per_channel = 500
    try:
        wait_until(lambda: shared_by(client, glues), timeout=30, what="3 instances sharing 8 partitions")
        # Faster than three instances on this machine publish: work waits in every partition.
        producer = Producer(client, per_channel, round_size=25)
        total = per_channel * len(CHANNELS)
        victim = glues[1]
        wait_until(lambda: producer.put >= total // 3, timeout=60, what="a third of the jobs put")
        held = held_by(client, victim)
        # Frozen (SIGSTOP) while we look, so what we see in flight is what it dies with.
        wait_until(lambda: freeze_holding_claims(client, victim, held), timeout=30, what="claims to kill")
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)
        killed_at = time.monotonic()
        # What it held when it died stays claimed until its leases expire: the handover's work.
        stranded = sum(client.zcard(f"feed.claimed:{feed}") for feed in held)
        survivors = [glues[0], glues[2]]
        wait_until(lambda: shared_by(client, survivors), timeout=60, what="the survivors to take over")
        taken_over = time.monotonic() - killed_at
        producer.join()
        wait_until(
            lambda: all(c.unique_count() == total for c in collectors),
            timeout=120,
            interval=0.2,
            what="every message on both nodes",
        )
        wait_until(lambda: shared_by(client, survivors), timeout=10, what="the survivors to hold on")
        assert stranded > 0, "the kill should leave claims in flight"
        assert_every_channel_in_put_order_on_both_nodes(collectors, per_channel)
        duplicates = [c.duplicates() for c in collectors]
        identical = all(
            [m["id"] for m in collectors[0].messages(ch)] == [m["id"] for m in collectors[1].messages(ch)]
            for ch in CHANNELS
        )
        print(
            f"\n{total} jobs, 3 instances, one killed -9 holding {len(held)} partitions"
            f" ({stranded} claims in flight at the kill; its partitions taken over after"
            f" {taken_over:.1f} s, visibility timeout 3 s): duplicates per node {duplicates}"
            f" (bound: concurrency {CONCURRENCY} per partition it held); raw delivery sequences"
            f" identical on both nodes: {identical}"
        )
        assert all(d <= CONCURRENCY * len(held) for d in duplicates)
        assert_feeds_empty(client)
    finally:
        stop(glues, collectors)


def test_two_instances_keep_each_channels_order_through_a_node_that_keeps_failing(
    workdir, redis_server, push_nodes
):
    # Two faults at once: several instances, and a node that refuses everything (503) for a
    # second at a time while jobs flow. Both instances hold what it refuses in its one shared
    # backlog; one drains it at a time, and the other goes live only once it is empty.
    client = redis_server.client()
    outage = threading.Event()
    refused = []

    def refuse_in_outage(path, body):
        if outage.is_set():
            refused.append(path)
            return 503
        return None

    flapping = FaultyNode(push_nodes[1].cluster_port, rule=refuse_in_outage)
    config = config_for(workdir, redis_server, push_nodes)
    config.write_text(config.read_text().replace(push_nodes[1].cluster_url, flapping.base_url))
    collectors = [ChannelCollectors(node, CHANNELS) for node in push_nodes]
    glues = [GlueProcess(config, "comments").start() for _ in range(2)]
    per_channel = 300
    try:
        wait_until(lambda: shared_by(client, glues), timeout=30, what="2 instances sharing 8 partitions")
        producer = Producer(client, per_channel, round_size=10, pause=0.2)
        for _ in range(3):
            time.sleep(0.6)
            outage.set()
            time.sleep(1.2)
            outage.clear()
        producer.join()
        total = per_channel * len(CHANNELS)
        wait_until(
            lambda: all(c.unique_count() == total for c in collectors),
            timeout=120,
            interval=0.2,
            what="every message on both nodes",
        )
        assert refused, "the node should have refused messages during its outages"
        print(f"\n{total} jobs, 2 instances; the flapping node refused {len(refused)} requests in 3 outages")
        assert_every_channel_in_put_order_on_both_nodes(collectors, per_channel)
        assert_feeds_empty(client)
    finally:
        stop(glues, collectors)
        flapping.close()


def test_a_partition_handed_over_while_a_node_holds_its_messages_keeps_the_channels_order(
    workdir, redis_server, push_nodes
):
    # Two faults at once: node 2 refuses one channel (503) while the instance holding that
    # channel's partition stops and hands it over. The held messages wait in node 2's backlog;
    # the node takes the channel again at once, and the instance that took the partition over
    # is sending to node 2 live: it must still deliver the held messages before the next ones.
    client = redis_server.client()
    channel = CHANNELS[0]
    refusing = threading.Event()
    node = FaultyNode(
        push_nodes[1].cluster_port,
        rule=lambda path, body: 503 if refusing.is_set() and channel in path else None,
    )
    config = config_for(workdir, redis_server, push_nodes)
    config.write_text(config.read_text().replace(push_nodes[1].cluster_url, node.base_url))
    backlog = f"glue.backlog:comments:127.0.0.1:{node.port}"
    collectors = [ChannelCollectors(n, [channel]) for n in push_nodes]
    glues = [GlueProcess(config, "comments").start() for _ in range(2)]
    feed = PartitionedFeed(client, "comments", PARTITIONS)
    try:
        wait_until(lambda: shared_by(client, glues), timeout=30, what="2 instances sharing 8 partitions")
        # Every channel once: both instances' senders to node 2 go live.
        feed.put_many([comment(c, 0) for c in CHANNELS])
        wait_until(lambda: all(c.unique_count() == 1 for c in collectors), 30, what="the first message")
        partition = FEEDS[partition_of(channel, PARTITIONS)]
        holder, taker = glues if partition in held_by(client, glues[0]) else reversed(glues)
        refusing.set()
        feed.put_many([comment(channel, n) for n in range(1, 21)])
        wait_until(lambda: collectors[0].unique_count() == 21, 30, what="the channel on node 1")
        wait_until(
            lambda: sum(feed_counts(client, backlog)[s] for s in ("ready", "claimed")) == 20,
            30,
            what="20 messages held for node 2",
        )
        holder.terminate()
        refusing.clear()
        wait_until(lambda: shared_by(client, [taker]), timeout=30, what="the partition taken over")
        feed.put_many([comment(channel, n) for n in range(21, 41)])
        wait_until(
            lambda: all(c.unique_count() == 41 for c in collectors), 60, interval=0.2, what="every message"
        )
        for c in collectors:
            assert [m["data"]["n"] for m in c.first_seen(channel)] == list(range(41)), c.node
    finally:
        stop(glues, collectors)
        node.close()


def test_a_newcomer_gets_its_share_and_a_stopped_instance_hands_over_at_once(
    workdir, redis_server, push_nodes
):
    # Leases and claims of 30 s: anything faster than that was handed over, not expired.
    client = redis_server.client()
    config = config_for(workdir, redis_server, push_nodes, visibility_timeout=30)
    collectors = [ChannelCollectors(node, CHANNELS) for node in push_nodes]
    first = GlueProcess(config, "comments").start()
    second = GlueProcess(config, "comments")
    per_channel = 400
    try:
        wait_until(lambda: shared_by(client, [first]), timeout=30, what="one instance holding all")
        producer = Producer(client, per_channel)
        second.start()
        wait_until(lambda: shared_by(client, [first, second]), timeout=30, what="4 partitions each")
        wait_until(lambda: producer.put >= per_channel * len(CHANNELS) // 2, timeout=60, what="half put")
        pid = str(first.process.pid)
        assert first.terminate() == 0
        # Released as it stopped, not left to expire in 30 s:
        assert pid not in holders(client).values()
        wait_until(lambda: shared_by(client, [second]), timeout=20, what="the other to take all 8")
        producer.join()
        total = per_channel * len(CHANNELS)
        wait_until(
            lambda: all(c.unique_count() == total for c in collectors),
            timeout=120,
            interval=0.2,
            what="every message on both nodes",
        )
        assert_every_channel_in_put_order_on_both_nodes(collectors, per_channel)
        assert [c.duplicates() for c in collectors] == [0, 0]  # nothing was processed twice
        assert_feeds_empty(client)
    finally:
        for glue in (first, second):
            if glue.alive():
                glue.terminate()
        for c in collectors:
            c.close()


def test_enqueue_puts_each_job_on_its_channels_partition(workdir, redis_server, push_nodes):
    client = redis_server.client()
    glue = GlueProcess(config_for(workdir, redis_server, push_nodes), "comments")
    lines = "\n".join(comment(c, n) for n in range(3) for c in CHANNELS) + "\n"
    done = glue.cli("enqueue", "comments", input=lines)
    assert done.returncode == 0, done.stderr
    for channel in CHANNELS:
        feed = JobFeed(client, FEEDS[partition_of(channel, PARTITIONS)])
        items = [json.loads(i) for i in client.hvals(feed.keys.items)]
        assert sum(item["channel"] == channel for item in items) == 3
    one = glue.cli("enqueue", "comments", comment("article-1", 99))
    assert one.returncode == 0
    assert JobFeed(client, FEEDS[partition_of("article-1", PARTITIONS)]).item(one.stdout.strip())
    refused = glue.cli("enqueue", "comments", '{"event": "comment"}')
    assert refused.returncode == 1
    assert "names no channel" in refused.stderr


def test_status_stalled_and_retry_see_every_partition(workdir, redis_server, push_nodes):
    client = redis_server.client()
    glue = GlueProcess(config_for(workdir, redis_server, push_nodes), "comments").start()
    try:
        wait_until(lambda: shared_by(client, [glue]), timeout=30, what="the instance to hold all")
        # The json stage refuses the channel ALL: the job is stalled in its partition.
        bad = PartitionedFeed(client, "comments", PARTITIONS).put(comment("ALL", 1))
        partition = FEEDS[partition_of("ALL", PARTITIONS)]
        wait_until(lambda: client.sismember(f"feed.stalled:{partition}", bad), timeout=20, what="stalled")
        status = json.loads(glue.cli("status", "comments", "--json", "--sample", "0").stdout)[0]
        assert [p["feed"] for p in status["partitions"]] == FEEDS
        pid = str(glue.process.pid)
        assert all(p["holder"].split(":")[1] == pid for p in status["partitions"])
        assert status["stalled"] == 1 and status["workers"] == 1
        text = glue.cli("status", "comments", "--sample", "0").stdout
        assert f"partition {partition}: ready 0  claimed 0  stalled 1  held by" in text
        stalled = json.loads(glue.cli("stalled", "comments", "--json").stdout)
        assert [row["id"] for row in stalled] == [bad]
        retried = glue.cli("retry", "comments", bad)
        assert retried.returncode == 0 and "1 job(s) back on the queue" in retried.stdout
        assert glue.cli("check-config").stdout.startswith(
            "pipeline comments: feed comments in 8 partitions: json -> anonymize"
        )
    finally:
        glue.terminate()


def test_a_feed_is_not_read_in_another_number_of_partitions_while_its_old_ones_hold_jobs(
    workdir, redis_server, push_nodes
):
    JobFeed(redis_server.client(), "comments").put(comment("article-1", 1))  # queued, unpartitioned
    glue = GlueProcess(config_for(workdir, redis_server, push_nodes), "comments")
    glue.start(wait_ready=False)
    assert glue.wait(timeout=30) == 78  # EX_CONFIG: systemd does not restart it
    assert "pipelines.comments.partitions: feed 'comments' is read in 1 partition(s)" in glue.log()


def test_a_partition_balancer_that_dies_stops_the_process_which_hands_its_partitions_back(
    workdir, redis_server, push_nodes
):
    fault = (
        "import gevent, realtime_glue.balancer\n"
        "def dies(self):\n"
        "    for _ in range(3):\n"
        "        self.balance_once()\n"
        "        gevent.sleep(self.interval)\n"
        "    raise RuntimeError('injected fault')\n"
        "realtime_glue.balancer.PartitionBalancer.run = dies\n"
    )
    client = redis_server.client()
    glue = GlueProcess(config_for(workdir, redis_server, push_nodes), "comments", fault=fault).start()
    try:
        code = glue.wait(timeout=60)
    finally:
        glue.kill()
    assert code == 70, glue.log_tail()
    assert "partition balancer of comments died: RuntimeError: injected fault" in glue.log()
    wait_until(lambda: set(holders(client).values()) == {None}, timeout=10, what="its partitions handed back")
