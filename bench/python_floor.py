"""The floor under any Python glue: the glue's own work in one blocking loop, nothing else.

Per claim: the glue's claim (the same Lua script and BLMOVE wait over a
connection of its own, with the last claim's finishes written ahead of it),
the same json -> anonymize -> format stages, the same POST requests written
at once on one plain keep-alive connection, and their answers read in order.
No gevent, no greenlets, no backlog, no retries, no order kept across nodes:
what is left is what a job costs a Python process at all. After a claim
smaller than a full one it sleeps up to LINGER seconds, as the glue's claim
loop does ([queue] claim_linger), so the same wait can be compared.

    python bench/python_floor.py REDIS_URL FEED NODE_URL LINGER

Runs until SIGTERM. glue_bench.py measures its CPU per job and its enqueue -> EventSource
latency beside the glue's.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from urllib.parse import urlsplit

import redis

from realtime_glue.http_client import _Connection
from realtime_glue.jobqueue import JobFeed
from realtime_glue.message import Message
from realtime_glue.pipeline import build_pipeline
from realtime_glue.publishers.push_node import DELIVERED, PushNode
from realtime_glue.stage import StageContext

CLAIM = 64


def main(redis_url: str, feed_name: str, node_url: str, linger: float) -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    feed = JobFeed(redis.Redis.from_url(redis_url), feed_name).with_own_connection()
    stages = build_pipeline("floor", ["json", "anonymize", "format"], {}, StageContext(pipeline="floor"))
    node = PushNode(node_url)
    parts = urlsplit(node_url)
    connection = _Connection(socket.create_connection((parts.hostname, parts.port)))
    done: list[str] = []
    while not stopping:
        if done:  # last claim's finishes, in the same round trip as this claim
            feed.finish_ahead(done, ["published"] * len(done), notify=True)
        jobs = feed.claim(CLAIM, wait=1.0)
        if done and feed.finished_ahead() is None:
            raise SystemExit("python floor: a finish was not written")
        done = []
        if not jobs:
            continue
        messages = [Message(job_id=job.id, raw=job.item, failures=job.failures) for job in jobs]
        errors = [error for error in stages.run_batch(messages) if error is not None]
        if errors:
            raise SystemExit(f"python floor: {errors[0]}")
        connection.sock.sendall(b"".join(node._request(m.channel, m.event_id, m.body) for m in messages))
        for _ in messages:
            response, _ = connection.read_response()
            if response.status not in DELIVERED:
                raise SystemExit(f"python floor: the node answered HTTP {response.status}")
        done = [job.id for job in jobs]
        if linger and len(jobs) < CLAIM:
            time.sleep(linger)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
