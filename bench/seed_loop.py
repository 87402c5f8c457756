"""The seed's way, as a baseline: one message at a time, all blocking.

Per message: a Thoonk-style get (BRPOP feed.ids, then ZADD feed.claimed +
HGET feed.items in one MULTI), the same json -> anonymize -> format stages the
glue runs, one `requests` POST to the push node, and Thoonk's finish (WATCH
claimed, ZRANK, MULTI: ZREM claimed, HDEL cancelled, ZREM published, INCR
finishes, HDEL items). A plain Python process: no gevent, no batching.

    python bench/seed_loop.py REDIS_URL FEED NODE_URL COUNT SECONDS

Stops after COUNT messages or SECONDS, whichever comes first.

Prints one JSON object: {"messages", "seconds", "per_second"}.
"""

from __future__ import annotations

import json
import sys
import time

import redis
import requests

from realtime_glue.message import Message
from realtime_glue.pipeline import build_pipeline
from realtime_glue.stage import StageContext


def thoonk_get(client: redis.Redis, feed: str, timeout: int = 1):
    popped = client.brpop(f"feed.ids:{feed}", timeout)
    if popped is None:
        return None, None
    job_id = popped[1]
    pipe = client.pipeline(transaction=True)
    pipe.zadd(f"feed.claimed:{feed}", {job_id: time.time() * 1000})
    pipe.hget(f"feed.items:{feed}", job_id)
    _, item = pipe.execute()
    return job_id, item


def thoonk_finish(client: redis.Redis, feed: str, job_id: bytes) -> None:
    def finish(pipe):
        if pipe.zrank(f"feed.claimed:{feed}", job_id) is None:
            return
        pipe.multi()
        pipe.zrem(f"feed.claimed:{feed}", job_id)
        pipe.hdel(f"feed.cancelled:{feed}", job_id)
        pipe.zrem(f"feed.published:{feed}", job_id)
        pipe.incr(f"feed.finishes:{feed}")
        pipe.hdel(f"feed.items:{feed}", job_id)

    client.transaction(finish, f"feed.claimed:{feed}")


def main(redis_url: str, feed: str, node_url: str, count: int, seconds: float) -> dict:
    client = redis.Redis.from_url(redis_url)
    session = requests.Session()
    pipeline = build_pipeline("seed", ["json", "anonymize", "format"], {}, StageContext(pipeline="seed"))
    done = 0
    started = time.monotonic()
    deadline = started + seconds
    while done < count and time.monotonic() < deadline:
        job_id, item = thoonk_get(client, feed)
        if job_id is None:
            break
        message = pipeline.run(Message(job_id=job_id.decode(), raw=item))
        response = session.post(
            f"{node_url}/pub",
            params={"id": message.channel},
            data=message.body,
            headers={"Event-ID": message.event_id, "Content-Type": "application/json"},
            timeout=5,
        )
        if response.status_code not in (200, 201, 202):
            raise SystemExit(f"seed loop: publish answered HTTP {response.status_code}")
        thoonk_finish(client, feed, job_id)
        done += 1
    elapsed = time.monotonic() - started
    return {"messages": done, "seconds": round(elapsed, 3), "per_second": round(done / elapsed, 1)}


if __name__ == "__main__":
    url, feed_name, node, jobs, duration = sys.argv[1:6]
    print(json.dumps(main(url, feed_name, node, int(jobs), float(duration))))
