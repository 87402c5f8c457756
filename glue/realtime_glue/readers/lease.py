"""Only one readers unit publishes: the one holding a lease in Redis.

Several glue hosts each run glue-readers.service (nothing to place by hand, no
single point of failure), but one stream of counts is easier to read than two
interleaved ones taken a few milliseconds apart. The lease is a redis-py Lock
(`glue.readers.lease:<channel>`, taken with SET NX PX, renewed and released by
its token in one atomic step each). The holder renews it every round; if it
stops (dies, hangs, loses Redis), the lease expires after `ttl`, and another
unit takes it and starts with a full snapshot. The others stand by and ask the
nodes nothing.

A holder that cannot reach Redis holds the lease until it would have expired,
counted from when its last renewal was sent: by then another unit may have taken
it, so it stops publishing. Even if two units overlapped, the counts they send are
absolute: a page would only see the same numbers twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)


class Lease:
    def __init__(
        self, redis, name: str, holder: str, ttl: float, clock: Callable[[], float] = time.monotonic
    ):
        self.key = f"glue.readers.lease:{name}"
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self._lock = redis.lock(self.key, timeout=ttl, thread_local=False)
        self._valid_until = 0.0

    def hold(self) -> bool:
        """Take or renew the lease; True while this unit holds it."""
        asked = self.clock()
        try:
            held = self._renew() if self._valid_until else self._take()
        except RedisError as exc:
            still = self.clock() < self._valid_until
            if not still:
                self._valid_until = 0.0
            log.warning(
                "cannot renew the readers lease in Redis (%s); %s",
                exc,
                "holding it until it would expire" if still else "not publishing",
            )
            return still
        self._valid_until = asked + self.ttl if held else 0.0
        return held

    def _take(self) -> bool:
        return self._lock.acquire(blocking=False, token=self.holder)

    def _renew(self) -> bool:
        try:
            return bool(self._lock.reacquire())
        except LockError:
            # It expired (a long pause) and someone else may hold it now: try to take it.
            return self._take()

    def release(self) -> None:
        """Give the lease up (on stop), so another unit takes over at once."""
        if not self._valid_until:
            return
        self._valid_until = 0.0
        try:
            self._lock.release()
        except LockError:
            pass  # expired meanwhile: nothing of ours to release
        except RedisError as exc:
            log.warning("cannot release the readers lease (%s); it expires by itself", exc)
