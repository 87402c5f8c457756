"""Returns expired claims to their queue, or stalls them after too many failures."""

from __future__ import annotations

import logging

import gevent

from .actor import Actor
from .jobqueue import JobFeed

log = logging.getLogger(__name__)


class Reclaimer(Actor):
    def __init__(self, feeds: list[JobFeed], visibility_timeout: float, max_failures: int, metrics=None):
        super().__init__(name="reclaimer")
        self.feeds = feeds
        self.visibility_timeout = visibility_timeout
        self.max_failures = max_failures
        self.metrics = metrics
        self.interval = max(0.05, visibility_timeout / 3)

    def reclaim_once(self) -> None:
        for feed in self.feeds:
            requeued, stalled = feed.reclaim_expired(self.visibility_timeout, self.max_failures)
            if requeued or stalled:
                log.warning(
                    "feed %s: %d expired claims requeued, %d stalled after too many failures",
                    feed.name,
                    requeued,
                    stalled,
                )
                if self.metrics is not None:
                    self.metrics.reclaimed.inc(requeued)
                    self.metrics.stalled.inc(stalled)

    def run(self) -> None:
        while not self.stopping:
            try:
                self.reclaim_once()
            except Exception as exc:
                log.warning("reclaiming expired claims failed: %s", exc)
            gevent.sleep(self.interval)
