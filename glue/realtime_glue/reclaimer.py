"""Returns claims whose lease expired to their queue, or stalls them after too many failures.

A lease expires when its worker has not renewed it for the visibility
timeout. After an outage (Redis away, or this process just started) nobody
could renew anything, so every lease looks expired: the reclaimer first
needs one visibility timeout of unbroken contact with Redis (it pings
meanwhile; any failure starts the count again), in which every live
worker's heartbeat renews what it holds. Only what is still expired after
that grace belongs to a dead worker. Lease times are Redis's own (TIME).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .actor import Actor
from .jobqueue import JobFeed
from .supervisor import pause, progress

log = logging.getLogger(__name__)


class Reclaimer(Actor):
    def __init__(
        self,
        feeds: list[JobFeed] | Callable[[], list[JobFeed]],
        visibility_timeout: float,
        max_failures: int,
        metrics=None,
        clock=time.monotonic,
    ):
        """`feeds`: a list, or a function returning the feeds now (backlogs come and go)."""
        super().__init__(name="reclaimer")
        self.feeds = feeds
        self.visibility_timeout = visibility_timeout
        self.max_failures = max_failures
        self.metrics = metrics
        self.interval = max(0.05, visibility_timeout / 3)
        self.clock = clock
        # Since when (monotonic) every call to Redis has succeeded; None after a failure.
        self.contact_since: float | None = None

    def reclaim_once(self) -> None:
        try:
            if self.contact_since is None or self.clock() - self.contact_since < self.visibility_timeout:
                # In the grace: only make sure Redis answers, so the grace counts unbroken contact.
                self._feeds()[0].redis.ping()
                if self.contact_since is None:
                    self.contact_since = self.clock()
                return
            for feed in self._feeds():
                self._reclaim(feed)
        except Exception:
            # Redis was away: leases could not be renewed meanwhile; the grace starts again.
            self.contact_since = None
            raise

    def _feeds(self) -> list[JobFeed]:
        return self.feeds() if callable(self.feeds) else self.feeds

    def _reclaim(self, feed: JobFeed) -> None:
        requeued, stalled = feed.reclaim_expired(self.visibility_timeout, self.max_failures)
        if requeued or stalled:
            log.warning(
                "feed %s: %d claims whose lease expired requeued, %d stalled after too many failures",
                feed.name,
                requeued,
                stalled,
            )
            if self.metrics is not None:
                self.metrics.reclaimed.inc(requeued)
                self.metrics.stalled.inc(stalled)

    def run(self) -> None:
        while not self.stopping:
            progress()
            try:
                self.reclaim_once()
            except Exception as exc:
                log.warning("reclaiming expired claims failed: %s", exc)
            pause(self.interval)
