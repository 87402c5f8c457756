"""Deliveries a push service refused for good (a 4xx other than 404/410), with the reason.

Sending them again would not help (a malformed request, a VAPID key the
service rejects, a payload too large), so they are written down for an
operator and the job carries on. The newest `keep` are kept.

    glue.webpush.dead:<pipeline>  list, newest first: JSON {time_ms, job, user, sub, origin, status, reason}
"""

from __future__ import annotations

import json
import time


class DeadLetters:
    def __init__(self, redis, pipeline: str, keep: int = 1000):
        self.redis = redis
        self.key = f"glue.webpush.dead:{pipeline}"
        self.keep = keep

    def add(self, records: list[dict]) -> None:
        if not records:
            return
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            pipe.lpush(self.key, json.dumps({"time_ms": now_ms, **record}, separators=(",", ":")))
        pipe.ltrim(self.key, 0, self.keep - 1)
        pipe.execute()

    def newest(self, count: int = 100) -> list[dict]:
        return [json.loads(r) for r in self.redis.lrange(self.key, 0, count - 1)]

    def count(self) -> int:
        return self.redis.llen(self.key)
