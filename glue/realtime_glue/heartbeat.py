"""Tells Redis this worker is alive: its entry in each feed's workers set."""

from __future__ import annotations

import logging

import gevent

from .actor import Actor
from .jobqueue import JobFeed

log = logging.getLogger(__name__)


class Heartbeat(Actor):
    def __init__(self, feeds: list[JobFeed], interval: float):
        super().__init__(name="heartbeat")
        self.feeds = feeds
        self.interval = interval

    def beat_once(self) -> None:
        for feed in self.feeds:
            feed.heartbeat()

    def run(self) -> None:
        while not self.stopping:
            try:
                self.beat_once()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            gevent.sleep(self.interval)
