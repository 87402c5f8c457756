"""Claims and the real glue process: a claim its worker lost track of comes back while the
worker lives; a Redis outage longer than the visibility timeout costs no duplicate."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-claims-"))


def comment(n: int, channel: str = "claims") -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"n": n}})


def glue_worker_id(client, feed: str) -> str:
    workers = client.zrange(f"feed.workers:{feed}", 0, -1)
    assert len(workers) == 1, workers
    return workers[0].decode()


def test_a_claim_the_live_worker_never_got_the_reply_of_is_delivered(workdir, redis_server, push_node):
    config = write_config(
        workdir, redis_server.url, [push_node.base_url], '[pipelines.comments]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "comments").start()
    client = redis_server.client()
    try:
        with push_node.events("claims") as events:
            push_node.wait_for_subscribers("claims")
            worker = glue_worker_id(client, "comments")
            # The glue's worker claims a job, and the reply is lost on the way back: the claim
            # is in Redis under its name, and the process knows nothing of it. (The glue is
            # paused meanwhile, so that it does not claim the job itself first; the claim it
            # left waiting in Redis for the next job ends empty within its wait.)
            os.kill(glue.process.pid, signal.SIGSTOP)
            try:
                wait_until(
                    lambda: client.info("clients")["blocked_clients"] == 0, 10, what="no waiting claim"
                )
                lost = JobFeed(client, "comments", worker_id=worker)
                job_id = lost.put(comment(1))
                assert [job.id for job in lost.claim(1)] == [job_id]
            finally:
                os.kill(glue.process.pid, signal.SIGCONT)
            # It keeps heartbeating (it is alive), yet the claim comes back and is delivered.
            wait_until(
                lambda: feed_counts(client, "comments")["finishes"] == 1, 30, what="the lost claim finished"
            )
            event = events.next_event()
        assert json.loads(event.data)["id"] == job_id
        assert feed_counts(client, "comments")["claimed"] == 0
        assert glue.alive()
    finally:
        glue.terminate()
