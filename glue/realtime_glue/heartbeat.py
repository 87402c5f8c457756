"""Tells Redis this worker is alive, and renews the lease of every claim it holds.

A claim's lease is its score in the feed's claimed set. Renewing only what
the worker really holds (its jobs in flight, its backlog records being
drained) is what lets the reclaimer return a claim the worker lost track of
(a claim whose reply never arrived) while the worker itself lives on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .actor import Actor
from .jobqueue import JobFeed
from .supervisor import pause, progress

log = logging.getLogger(__name__)

# A feed and what this worker holds on it now.
Holder = tuple[JobFeed, Callable[[], Iterable[str]]]


class Heartbeat(Actor):
    def __init__(self, holders: list[Holder] | Callable[[], list[Holder]], interval: float):
        """`holders`: a list, or a function returning the holders now (partitions come and go)."""
        super().__init__(name="heartbeat")
        self.holders = holders
        self.interval = interval

    def beat_once(self) -> None:
        holders = self.holders() if callable(self.holders) else self.holders
        for feed, held in holders:
            feed.heartbeat(held=list(held()))

    def run(self) -> None:
        while not self.stopping:
            progress()
            try:
                self.beat_once()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            pause(self.interval)
