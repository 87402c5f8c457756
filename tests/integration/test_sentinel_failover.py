"""Redis with Sentinel, real processes on loopback: three redis-servers (a primary,
two replicas, min-replicas-to-write 1) and three sentinels (tests/support/sentinel.py),
the real glue, real nginx push nodes.

- The primary is killed while jobs flow: the glue follows the new primary without
  restarting, every acknowledged durable put reaches the subscribers on both nodes in
  order per channel, `status` names the new primary and the failover, the metrics
  count it; the old primary comes back as a replica. On the venv's redis-py and on
  Debian 12's python3-redis 4.3.
- Fencing: the glue's client refuses a node that is not the primary, and drops a
  primary that lost its replicas (NOREPLICAS) without claiming anything there.
- Durable puts: acknowledged once a replica has them; without replicas, an error
  that says so (JobFeed and `enqueue --durable`, exit 75).
- Bad input: check-config and run name the key (exit 78); sentinels that vanish
  under a running glue do not stop it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from realtime_glue.config import parse_config
from realtime_glue.errors import PutNotReplicated
from realtime_glue.jobqueue import JobFeed
from realtime_glue.redis_connection import SentinelAnswer, connect_redis, sentinel_finder
from support.event_collector import ChannelNumbers
from support.glue_process import DEBIAN_PYTHON, GlueProcess, wait_until, write_config
from support.ports import free_port
from support.push_node import PushNode
from support.sentinel import SentinelDeployment

CHANNELS = [f"failover-{c}" for c in range(4)]
PIPELINE = '[pipelines.comments]\nstages = ["json", "anonymize", "format", "http"]\nconcurrency = 64\n'


@pytest.fixture
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="glue-sentinel-"))


@pytest.fixture
def deployment():
    # down-after 2 s: quicker than production (5 s), slow enough that a loaded
    # machine does not fail over a primary that is only slow.
    redis_deployment = SentinelDeployment(down_after_ms=2000, min_replicas_max_lag=3).start()
    yield redis_deployment
    redis_deployment.cleanup()


def glue_config(
    workdir: Path,
    deployment: SentinelDeployment,
    nodes: list[str],
    extra: str = "",
    pipelines: str = PIPELINE,
) -> Path:
    return write_config(
        workdir, "", nodes, pipelines, extra=extra, redis_table=deployment.redis_table(workdir)
    )


def comment(channel: str, n: int) -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"n": n, "email": "a@b.c"}})


class DurableProducer:
    """Puts `per_channel` jobs on each channel, round robin, at `rate` a second, each a
    durable put retried with the same job id until it is acknowledged (a producer
    that must not lose a job). `acked[channel]` lists the acknowledged `n`s in order."""

    def __init__(self, feed: JobFeed, per_channel: int, rate: float):
        self.feed = feed
        self.acked: dict[str, list[int]] = {channel: [] for channel in CHANNELS}
        self.failed_attempts = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(per_channel, rate), daemon=True)
        self.thread.start()

    def _run(self, per_channel: int, rate: float) -> None:
        started = time.monotonic()
        for i in range(per_channel * len(CHANNELS)):
            channel, n = CHANNELS[i % len(CHANNELS)], i // len(CHANNELS)
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            while True:
                try:
                    self.feed.put(comment(channel, n), job_id=f"{channel}-{n:05d}", durable=True)
                    break
                except (redis.RedisError, PutNotReplicated):
                    self.failed_attempts += 1
                    time.sleep(0.05)
            self.acked[channel].append(n)
        self.done.set()

    def count(self) -> int:
        return sum(len(ns) for ns in self.acked.values())


def check_delivery(acked: dict[str, list[int]], received: dict[str, list[int]], node: str) -> int:
    """Every acknowledged job arrived, first arrivals in put order per channel; returns the duplicates."""
    duplicates = 0
    for channel, ns in acked.items():
        got = received[channel]
        firsts = list(dict.fromkeys(got))
        missing = sorted(set(ns) - set(firsts))
        assert missing == [], (
            f"{node} {channel}: {len(missing)} acknowledged jobs never arrived: {missing[:10]}"
        )
        assert [n for n in firsts if n in set(ns)] == ns, f"{node} {channel}: not in put order"
        duplicates += len(got) - len(firsts)
    return duplicates


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


@pytest.mark.parametrize("python", ["venv", "debian"])
def test_the_glue_follows_a_failover_without_restarting_and_loses_no_acknowledged_job(
    python, workdir, deployment
):
    interpreter = DEBIAN_PYTHON if python == "debian" else None
    if interpreter and not os.path.exists(interpreter):
        pytest.skip(f"{interpreter} is missing (Debian's python3 with python3-redis 4.3)")
    nodes = [PushNode().start(), PushNode().start()]
    metrics_port = free_port()
    config_path = glue_config(workdir, deployment, [n.cluster_url for n in nodes])
    config_path.write_text(
        config_path.read_text().replace('listen = ""', f'listen = "127.0.0.1:{metrics_port}"')
    )
    glue = GlueProcess(config_path, "comments", **({"python": interpreter} if interpreter else {}))
    subscribers = [ChannelNumbers(node, CHANNELS) for node in nodes]
    try:
        glue.start()
        pid = glue.process.pid
        config = parse_config(config_path.read_bytes(), str(config_path))
        producer = DurableProducer(JobFeed(connect_redis(config), "comments"), per_channel=150, rate=100)
        wait_until(lambda: producer.count() >= 150, 30, what="150 acknowledged puts before the kill")

        old = deployment.kill_primary()
        killed_at = time.monotonic()
        deployment.wait_for_new_primary(old)
        acked_before = producer.count()
        wait_until(lambda: producer.count() > acked_before, 60, what="a put acknowledged by the new primary")
        writable_after = time.monotonic() - killed_at

        assert producer.done.wait(120), "the producer did not finish"
        for node, subs in zip(nodes, subscribers, strict=True):
            try:
                wait_until(
                    lambda subs=subs: all(set(producer.acked[c]) <= set(subs.received[c]) for c in CHANNELS),
                    60,
                    what=f"every acknowledged job on {node.base_url}",
                )
            except TimeoutError:
                missing = {c: sorted(set(producer.acked[c]) - set(subs.received[c]))[:10] for c in CHANNELS}
                raise AssertionError(
                    f"{node.base_url}: acknowledged jobs missing (first 10 per channel): {missing}\n"
                    f"glue log (end):\n{glue.log_tail(6000)}"
                ) from None
        duplicates = [
            check_delivery(producer.acked, subs.received, node.base_url)
            for node, subs in zip(nodes, subscribers, strict=True)
        ]
        assert glue.alive() and glue.process.pid == pid, f"the glue restarted:\n{glue.log_tail()}"

        # (On a loaded machine the sentinels may fail over once more: the last one counts.)
        new = deployment.primary()
        status = json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]["redis"]
        assert status["primary"] == f"127.0.0.1:{new.port}"
        assert status["last_failover"]["new"] == f"127.0.0.1:{new.port}"
        failovers = metric(metrics_port, "glue_redis_failovers_total")
        assert failovers >= 1
        if failovers == 1:
            assert status["last_failover"]["old"] == f"127.0.0.1:{old.port}"
        text = glue.cli("status", "--sample", "0").stdout
        assert f"primary 127.0.0.1:{new.port}" in text and "last failover" in text

        # The old primary comes back: a replica of the new one, and nothing is lost.
        deployment.restart(old)
        deployment.wait_until_replica_of(old, new)
        assert glue.alive() and glue.process.pid == pid
        print(
            f"{python}: {producer.count()} durable puts, {producer.failed_attempts} put attempts failed"
            f" during the failover; writable again {writable_after:.1f}s after the kill; duplicates per node"
            f" {duplicates}"
        )
    finally:
        for subs in subscribers:
            subs.close()
        glue.kill()
        for node in nodes:
            node.cleanup()


def test_the_client_refuses_a_node_that_is_not_the_primary(workdir, deployment):
    config_path = glue_config(workdir, deployment, ["http://127.0.0.1:9"])
    client = connect_redis(parse_config(config_path.read_bytes(), str(config_path)))
    assert client.execute_command("ROLE")[0] == b"master"
    replica = next(server for server in deployment.servers if server is not deployment.primary())
    # An answer out of date, as from a sentinel that missed a failover: it names a replica.
    finder = sentinel_finder(client)
    finder.current = SentinelAnswer("stale", primary=("127.0.0.1", replica.port), epoch=99)
    finder._found_at = time.monotonic()
    client.connection_pool.disconnect()
    with pytest.raises(redis.ConnectionError, match="is a slave, not a primary"):
        client.ping()
    # It forgot that answer: the next connection asks the sentinels again.
    assert client.execute_command("ROLE")[0] == b"master"


def test_a_primary_that_lost_its_replicas_is_dropped_and_nothing_is_claimed_there(workdir, deployment):
    config_path = glue_config(workdir, deployment, ["http://127.0.0.1:9"])
    client = connect_redis(parse_config(config_path.read_bytes(), str(config_path)))
    feed = JobFeed(client, "comments")
    feed.put(comment("fenced", 1))
    primary = deployment.primary()
    for server in deployment.servers:
        if server is not primary:
            server.kill()

    # min-replicas-max-lag (3 s) after the replicas' last acknowledgement.
    def fenced() -> bool:
        try:
            client.set("probe", 1)
        except redis.ConnectionError as exc:
            return "fenced" in str(exc)
        return False

    wait_until(fenced, 15, interval=0.2, what="the primary to refuse writes")
    with pytest.raises(redis.ConnectionError, match="refuses writes without its replicas"):
        feed.claim(1)
    assert primary.client().zcard("feed.claimed:comments") == 0
    assert primary.client().llen("feed.ids:comments") == 1


def test_durable_puts_are_acknowledged_by_a_replica_or_say_they_may_not_survive(workdir, deployment):
    config_path = glue_config(workdir, deployment, ["http://127.0.0.1:9"], extra="")
    config_path.write_text(config_path.read_text().replace("[redis]\n", "[redis]\ndurable_timeout = 3\n", 1))
    glue = GlueProcess(config_path, "comments")
    config = parse_config(config_path.read_bytes(), str(config_path))
    feed = JobFeed(connect_redis(config), "comments", durable_timeout=3)
    job_id = feed.put(comment("durable", 1), durable=True)
    primary = deployment.primary()
    replicas = [server for server in deployment.servers if server is not primary]
    # durable_replicas = 1: acknowledged once one replica has it (the other may lag).
    assert any(replica.client().hexists("feed.items:comments", job_id) for replica in replicas)

    # Replicas gone, fencing off (min-replicas-to-write 0): queued, not acknowledged.
    primary.client().config_set("min-replicas-to-write", 0)
    for replica in replicas:
        replica.kill()
    with pytest.raises(PutNotReplicated, match="0 of 1 replica") as error:
        feed.put(comment("durable", 2), job_id="not-replicated", durable=True)
    assert "may or may not survive a failover" in str(error.value)
    assert primary.client().hexists("feed.items:comments", "not-replicated")

    done = glue.cli("enqueue", "--durable", "comments", comment("durable", 3))
    assert done.returncode == 75, done.stderr
    queued = done.stdout.strip()
    assert primary.client().hexists("feed.items:comments", queued)
    assert "0 of 1 replica(s) confirmed" in done.stderr and "may or may not survive" in done.stderr


def test_durable_enqueue_on_a_partitioned_pipeline_waits_on_every_partition_it_puts_to(workdir, deployment):
    pipelines = PIPELINE + "partitions = 4\n"
    config_path = glue_config(workdir, deployment, ["http://127.0.0.1:9"], pipelines=pipelines)
    config_path.write_text(config_path.read_text().replace("[redis]\n", "[redis]\ndurable_timeout = 3\n", 1))
    glue = GlueProcess(config_path, "comments")
    lines = "".join(comment(channel, 1) + "\n" for channel in CHANNELS)
    done = glue.cli("enqueue", "--durable", "comments", input=lines)
    assert done.returncode == 0, done.stderr
    ids = done.stdout.split()
    primary = deployment.primary()
    replicas = [server for server in deployment.servers if server is not primary]
    # durable_replicas = 1: a replica has each job (not necessarily the same one, nor both).
    on_partitions = {
        job_id: [
            [n for n in range(4) if replica.client().hexists(f"feed.items:comments.{n}", job_id)]
            for replica in replicas
        ]
        for job_id in ids
    }
    assert len(ids) == len(CHANNELS)
    assert all(any(len(where) == 1 for where in per_replica) for per_replica in on_partitions.values())

    # Without replicas: every job is still queued, every id printed, exit 75.
    primary.client().config_set("min-replicas-to-write", 0)
    for replica in replicas:
        replica.kill()
    done = glue.cli("enqueue", "--durable", "comments", input=lines)
    assert done.returncode == 75, done.stderr
    ids = done.stdout.split()
    assert len(ids) == len(CHANNELS)
    assert all(
        any(primary.client().hexists(f"feed.items:comments.{n}", job_id) for n in range(4)) for job_id in ids
    )
    assert "0 of 1 replica(s) confirmed" in done.stderr


def test_check_config_and_run_name_the_wrong_key(workdir, deployment):
    config_path = glue_config(workdir, deployment, ["http://127.0.0.1:9"])
    good = config_path.read_text()
    glue = GlueProcess(config_path, "comments")
    done = glue.cli("check-config")
    assert done.returncode == 0, done.stderr
    assert f"primary 127.0.0.1:{deployment.primary().port}" in done.stdout

    def changed(key: str, value: str) -> str:
        return re.sub(rf"^{key} = .*$", f"{key} = {value}", good, count=1, flags=re.MULTILINE)

    closed = json.dumps([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"])
    cases = {
        "redis.sentinels": changed("sentinels", closed),
        "redis.service": changed("service", '"no-such-service"'),
        "redis.sentinel_password_file": changed(
            "sentinel_password_file", json.dumps(str(workdir / "redis.password"))
        ),
    }
    for key, text in cases.items():
        config_path.write_text(text)
        done = glue.cli("check-config")
        assert done.returncode == 78, f"{key}: {done.stdout}{done.stderr}"
        assert f"config error: {key}:" in done.stderr, done.stderr
    # A running glue would retry; one starting with a service the sentinels do not
    # know stops at once with the same error (systemd does not restart 78).
    config_path.write_text(cases["redis.service"])
    glue.start(wait_ready=False)
    assert glue.wait(30) == 78
    assert "redis.service: the sentinels monitor no service named 'no-such-service'" in glue.log()


def test_sentinels_that_vanish_under_a_running_glue_do_not_stop_it(workdir, deployment):
    node = PushNode().start()
    config_path = glue_config(workdir, deployment, [node.cluster_url])
    glue = GlueProcess(config_path, "comments").start()
    feed = JobFeed(deployment.primary().client(), "comments")
    try:
        with node.events("vanish", timeout=30) as stream:
            node.wait_for_subscribers("vanish")
            for sentinel in deployment.sentinels:
                sentinel.kill()
            # The primary still works: delivery goes on without the sentinels.
            feed.put(comment("vanish", 1))
            assert json.loads(stream.next_event().data)["data"]["n"] == 1
            wait_until(lambda: "cannot find the Redis primary" in glue.log(), 10, what="the warning")
            assert glue.alive()
            for sentinel in deployment.sentinels:
                sentinel.start()
            wait_until(lambda: "name a Redis primary again" in glue.log(), 20, what="the sentinels back")
            feed.put(comment("vanish", 2))
            assert json.loads(stream.next_event().data)["data"]["n"] == 2
        assert glue.alive()
    finally:
        glue.kill()
        node.cleanup()
