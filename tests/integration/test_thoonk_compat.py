"""Key-level compatibility with Thoonk: its producers and consumers share a feed with the glue.

The Thoonk side is written here with plain Redis commands, exactly as
thoonk.py's Job feed issues them (its package does not run on Python 3).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from realtime_glue.jobqueue import JobFeed
from support.glue_process import GlueProcess, wait_until, write_config


def thoonk_put(client, feed: str, item: str, priority: bool = False, job_id: str | None = None) -> str:
    """thoonk.py Job.put: LPUSH (RPUSH if priority) ids, INCR publishes, HSET item, ZADD published.
    `job_id`: a producer that picks its own ids (thoonk.py takes a uuid4)."""
    job_id = job_id or uuid.uuid4().hex
    pipe = client.pipeline()
    if priority:
        pipe.rpush(f"feed.ids:{feed}", job_id)
    else:
        pipe.lpush(f"feed.ids:{feed}", job_id)
    pipe.incr(f"feed.publishes:{feed}")
    pipe.hset(f"feed.items:{feed}", job_id, item)
    pipe.zadd(f"feed.published:{feed}", {job_id: int(time.time() * 1000)})
    pipe.execute()
    return job_id


def thoonk_get(client, feed: str, timeout: int = 1):
    """thoonk.py Job.get: BRPOP ids, then ZADD claimed and HGET item (two steps: not atomic)."""
    popped = client.brpop(f"feed.ids:{feed}", timeout)
    if popped is None:
        return None
    job_id = popped[1].decode()
    pipe = client.pipeline()
    pipe.zadd(f"feed.claimed:{feed}", {job_id: int(time.time() * 1000)})
    pipe.hget(f"feed.items:{feed}", job_id)
    pipe.hget(f"feed.cancelled:{feed}", job_id)
    _, item, cancelled = pipe.execute()
    return job_id, item, int(cancelled or 0)


def thoonk_finish(client, feed: str, job_id: str, result: str | None = None) -> None:
    """thoonk.py Job.finish, inside its WATCH transaction."""
    pipe = client.pipeline()
    pipe.zrem(f"feed.claimed:{feed}", job_id)
    pipe.hdel(f"feed.cancelled:{feed}", job_id)
    pipe.zrem(f"feed.published:{feed}", job_id)
    pipe.incr(f"feed.finishes:{feed}")
    if result is not None:
        pipe.publish(f"job.finish:{feed}", f"{job_id}\0{result}")
    pipe.hdel(f"feed.items:{feed}", job_id)
    pipe.execute()


def key_shapes(client) -> dict[str, str]:
    """Every key with its Redis type, ids masked so two feeds can be compared."""
    return {key.decode(): client.type(key).decode() for key in client.keys("*")}


def test_a_job_thoonk_wrote_is_claimed_and_finished_by_the_glue(redis_server):
    client = redis_server.client()
    payload = json.dumps({"channel": "news", "data": {"text": "hi"}})
    job_id = thoonk_put(client, "comments", payload)
    feed = JobFeed(client, "comments")
    (job,) = feed.claim(10)
    assert (job.id, job.item, job.failures) == (job_id, payload.encode(), 0)
    assert feed.finish([job.id]) == 1
    assert client.zcard("feed.published:comments") == 0
    assert client.hlen("feed.items:comments") == 0
    assert client.get("feed.publishes:comments") == b"1"
    assert client.get("feed.finishes:comments") == b"1"


def test_a_job_the_glue_wrote_has_exactly_the_keys_thoonk_writes(redis_server):
    client = redis_server.client()
    thoonk_put(client, "by-thoonk", "x")
    JobFeed(client, "by-glue").put("x")
    thoonk_keys = {k.replace("by-thoonk", "F"): t for k, t in key_shapes(client).items() if "by-thoonk" in k}
    glue_keys = {k.replace("by-glue", "F"): t for k, t in key_shapes(client).items() if "by-glue" in k}
    assert (
        glue_keys
        == thoonk_keys
        == {
            "feed.ids:F": "list",
            "feed.items:F": "hash",
            "feed.published:F": "zset",
            "feed.publishes:F": "string",
        }
    )


def test_thoonk_consumers_read_jobs_the_glue_wrote_in_order(redis_server):
    client = redis_server.client()
    feed = JobFeed(client, "comments")
    first = feed.put("first")
    second = feed.put("second")
    urgent = feed.put("urgent", priority=True)
    got = [thoonk_get(client, "comments") for _ in range(3)]
    assert [(g[0], g[1]) for g in got] == [(urgent, b"urgent"), (first, b"first"), (second, b"second")]
    for job_id, _, _ in got:
        thoonk_finish(client, "comments", job_id, result="done")
    assert feed.counts()["finishes"] == 3 and feed.counts()["unfinished"] == 0


def test_the_glue_reads_thoonk_failure_counts_and_thoonk_reads_the_glues(redis_server):
    client = redis_server.client()
    job_id = thoonk_put(client, "comments", "x")
    client.hset("feed.cancelled:comments", job_id, 2)  # Thoonk's cancel counted two failures
    feed = JobFeed(client, "comments")
    (job,) = feed.claim(1)
    assert job.failures == 2
    feed.cancel([job.id])
    assert thoonk_get(client, "comments")[2] == 3


def test_thoonk_listeners_get_the_job_finish_notice(redis_server):
    client = redis_server.client()
    pubsub = client.pubsub()
    pubsub.subscribe("job.finish:comments")
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"
    job_id = thoonk_put(client, "comments", "x")
    feed = JobFeed(client, "comments")
    feed.claim(1)
    feed.finish([job_id], results=["published"], notify=True)
    assert pubsub.get_message(timeout=10)["data"] == f"{job_id}\0published".encode()


def test_a_thoonk_job_id_that_would_forge_a_header_is_stalled_and_never_sent(redis_server, push_node):
    """A Thoonk producer picks its own job ids; one with CR/LF must not reach a request."""
    config = write_config(
        Path(tempfile.mkdtemp(prefix="glue-thoonk-")),
        redis_server.url,
        [push_node.cluster_url],
        '[pipelines.comments]\npreset = "json-anon-http"\n',
    )
    glue = GlueProcess(config, "comments").start()
    client = redis_server.client()
    forged = "evil\r\nX-Injected: 1"
    try:
        with push_node.events("news") as events:
            push_node.wait_for_subscribers("news")
            thoonk_put(client, "comments", json.dumps({"channel": "news", "data": {"n": 1}}), job_id=forged)
            thoonk_put(client, "comments", json.dumps({"channel": "news", "data": {"n": 2}}), job_id="good")
            event = events.next_event()
        assert json.loads(event.data)["id"] == "good"
        wait_until(
            lambda: client.sismember("feed.stalled:comments", forged), 10, what="the forged id stalled"
        )
        reason = client.hget("feed.stallreasons:comments", forged).decode()
        assert "cannot be an event id" in reason
        assert "X-Injected" not in push_node.error_log
    finally:
        glue.terminate()
