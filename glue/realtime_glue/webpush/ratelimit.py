"""At most `limit` notifications per user per `window` seconds, counted in Redis.

A busy thread must not turn a user's phone into a buzzer. The count is per
user across every glue process of the pipeline (a fixed window: one counter
key per user that expires with its window), and one notification is one job
addressed to the user, however many browsers it reaches. What is over the
limit is dropped and counted, not delayed: by the time the window ends the
news is old, and Topic already collapses what the push service still holds.

    glue.webpush.rate:<pipeline>:<user>   counter, expires after the window
"""

from __future__ import annotations

_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class UserRateLimit:
    def __init__(self, redis, pipeline: str, limit: int, window: float):
        self.redis = redis
        self.pipeline = pipeline
        self.limit = limit
        self.window_ms = int(window * 1000)
        self._count = redis.register_script(_COUNT)

    def key(self, user: str) -> str:
        return f"glue.webpush.rate:{self.pipeline}:{user}"

    def allow(self, users: list[str]) -> list[bool]:
        """Counts one notification for each user (in order, repeats included); True where within the limit."""
        if self.limit <= 0:
            return [True] * len(users)
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            self._count(keys=[self.key(user)], args=[self.window_ms], client=pipe)
        return [int(n) <= self.limit for n in pipe.execute()]
