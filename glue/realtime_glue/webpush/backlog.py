"""Push messages a push service could not take yet (429, 5xx, no answer): one backlog per origin.

While an origin fails, its messages wait in a Thoonk job feed in Redis (a
restart loses none) and new messages for it queue behind them, so a push
service that asks us to slow down is not hammered; every other origin, and
so every other user, carries on. A drainer per origin retries the oldest
first, never before the service's Retry-After, else with capped, jittered
exponential backoff. A message whose TTL ran out while it waited is dropped
(the push service would drop it too). Answers other than retry are settled
as for a new message: sent, subscription deleted, or dead-lettered.

    glue.webpush.backlog:<pipeline>:<host[:port]>   the origin's feed (Thoonk keys, see jobqueue)
    glue.webpush.backlogs:<pipeline>                set of origins that have one (found again on start)

The records a drainer has claimed are renewed by the service's heartbeat
(OriginBacklogs.holders), and the service's reclaimer takes back the claims of
a process that died mid-drain, as for the job feed and the push nodes' backlogs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent

from ..actor import Actor
from ..backoff import Backoff
from ..jobqueue import JobFeed
from .delivery import Deliverer, now_ms
from .metrics import WebPushMetrics
from .request import PushRequest
from .sender import RETRY

log = logging.getLogger(__name__)

BATCH = 64


@dataclass(frozen=True)
class Drained:
    claimed: int
    retry: int = 0  # how many the origin refused for now
    retry_after: float | None = None  # the longest Retry-After among them


def backlog_feed_name(pipeline: str, origin: str) -> str:
    return f"glue.webpush.backlog:{pipeline}:{origin.partition('://')[2]}"


def backlog_index_key(pipeline: str) -> str:
    return f"glue.webpush.backlogs:{pipeline}"


class OriginBacklog(Actor):
    """One origin's held messages, and the greenlet that delivers them when the origin is back."""

    def __init__(
        self,
        origin: str,
        feed: JobFeed,
        deliverer: Deliverer,
        metrics: WebPushMetrics,
        min_backoff: float = 0.5,
        max_backoff: float = 300.0,
    ):
        super().__init__(name=f"webpush backlog {origin}")
        self.origin = origin
        self.feed = feed
        self.deliverer = deliverer
        self.metrics = metrics
        self.min_backoff = min_backoff
        self.backoff = Backoff(min_backoff, max_backoff)
        self.down = False
        self.not_before = 0.0  # time.monotonic() before which nothing goes to the origin
        self.held: set[str] = set()  # records claimed by drain_once and not yet settled
        self.holding = 0  # hold() calls writing records now

    def hold(
        self,
        requests: list[PushRequest],
        reason: str,
        failed: bool,
        retry_after: float | None = None,
        before_put: Callable[[], None] | None = None,
    ) -> None:
        """Queue requests behind what the origin already holds; raises on a Redis error.

        `failed`: the origin just refused some of them (not only queued behind): its
        drainer waits Retry-After, or the first backoff step, before trying again.
        Everything the drainer looks at is set before the first Redis call yields, and
        while records are on their way in the drainer does not call the origin back up
        (an empty claim then says nothing): `before_put` is a Redis call made in that time."""
        self.mark_down(reason)
        if failed:
            pause = retry_after if retry_after is not None else self.min_backoff
            self.not_before = max(self.not_before, time.monotonic() + pause)
        self.holding += 1
        try:
            if before_put is not None:
                before_put()
            self.feed.put_many([r.to_record() for r in requests])
        finally:
            self.holding -= 1
        self.metrics.count("held", len(requests))

    def mark_down(self, reason: str) -> None:
        """From now on, new messages for the origin queue in the backlog."""
        if not self.down:
            log.warning(
                "push service %s is failing (%s); holding its messages in a backlog", self.origin, reason
            )
        self.down = True

    def stop(self, timeout: float | None = 5.0) -> None:
        """Let the drainer finish what it is sending (within a second or the sender's
        timeout), so its claims go back in order; kill it only after `timeout`."""
        self.stopping = True
        if self.greenlet is not None:
            self.greenlet.join(timeout)
        super().stop(timeout)

    def depth(self) -> int:
        counts = self.feed.counts()
        return counts["ready"] + counts["claimed"]

    def held_ids(self) -> list[str]:
        """The records this drainer has claimed now (the heartbeat renews their leases)."""
        return list(self.held)

    def run(self) -> None:
        while not self.stopping:
            delay = 0.0
            try:
                wait = self.not_before - time.monotonic()
                if wait > 0:
                    self.sleep(min(wait, 1.0))  # in steps, so a stop is seen
                    continue
                drained = self.drain_once()
                if drained.claimed == 0 and self.holding:
                    self.sleep(0.01)  # records are on their way in: not empty yet
                elif drained.claimed == 0:
                    if self.down:
                        log.warning("push service %s takes messages again; its backlog is empty", self.origin)
                    self.down = False
                    self.metrics.backlog_depth(self.origin, 0)
                    self.feed.wait_for_jobs(timeout=1.0)
                    self.backoff.succeeded()
                elif drained.retry == 0:
                    self.backoff.succeeded()
                else:
                    delay = max(drained.retry_after or 0.0, self.backoff.failed())
                    log.info(
                        "backlog for %s: %d of %d still refused for now; next try in %.1fs",
                        self.origin,
                        drained.retry,
                        drained.claimed,
                        delay,
                    )
            except Exception as exc:  # Redis away: the same backoff, never a busy loop
                delay = self.backoff.failed()
                log.warning("backlog for %s: %s; retrying in %.1fs", self.origin, exc, delay)
            if delay:
                self.not_before = time.monotonic() + delay

    def drain_once(self) -> Drained:
        """Deliver up to BATCH held messages, the oldest first and then the rest
        at once; those the origin still refuses for now, or that a stop
        interrupts, go back to the backlog in their place (released, no
        failure counted: their TTL bounds the retries)."""
        jobs = self.feed.claim(BATCH)
        if not jobs:
            return Drained(0)
        self.held.update(job.id for job in jobs)
        finished: list[str] = []
        retry_ids: list[str] = []
        retry_after = None
        try:
            requests = []
            for job in jobs:
                try:
                    request = PushRequest.from_record(job.item)
                except (ValueError, KeyError, TypeError) as exc:
                    # Not written by us: keep it for an operator, never retry it forever.
                    self.feed.stall(job.id, f"backlog record is unreadable: {type(exc).__name__}: {exc}")
                    finished.append(job.id)  # no longer claimed
                    continue
                if request.remaining_ttl(now_ms()) <= 0:
                    log.info(
                        "backlog for %s: a message for %s expired while waiting", self.origin, request.user
                    )
                    self.metrics.count("expired")
                    finished.append(job.id)
                    continue
                requests.append((job.id, request))
            settled = []
            # The oldest goes alone first: a service that still fails gets one
            # request, not a batch, and one that is back gets the rest in order.
            answers = self.deliverer.send([r for _, r in requests[:1]])
            if answers and answers[0].outcome != RETRY:
                answers += self.deliverer.send([r for _, r in requests[1:]])
            else:
                retry_ids += [job_id for job_id, _ in requests[1:]]
            for (job_id, request), answer in zip(requests, answers, strict=False):
                if answer.outcome == RETRY:
                    retry_ids.append(job_id)
                    if answer.retry_after is not None:
                        retry_after = max(retry_after or 0.0, answer.retry_after)
                else:
                    settled.append((request, answer))
                    finished.append(job_id)
            self.deliverer.settle(settled)
        finally:
            self.feed.finish(finished)  # skips the stalled ones, no longer claimed
            done = set(finished)
            # Released ids go back to the front in the order given: the oldest is claimed first again.
            self.feed.release([j.id for j in jobs if j.id not in done])
            self.held.difference_update(job.id for job in jobs)
        self.metrics.backlog_depth(self.origin, self.depth())
        return Drained(len(jobs), len(retry_ids), retry_after)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)


class OriginBacklogs:
    """The backlogs of one pipeline, one per push service origin, made when first needed."""

    def __init__(
        self, redis, pipeline: str, worker_id: str | None, deliverer: Deliverer, metrics: WebPushMetrics
    ):
        self.redis = redis
        self.pipeline = pipeline
        self.worker_id = worker_id
        self.deliverer = deliverer
        self.metrics = metrics
        self.backlogs: dict[str, OriginBacklog] = {}
        self.running = False

    def start(self) -> None:
        """Start a drainer for every origin that had a backlog (messages left by an earlier run)."""
        self.running = True
        for origin in sorted(_text(o) for o in self.redis.smembers(backlog_index_key(self.pipeline))):
            self._backlog(origin)

    def _backlog(self, origin: str) -> OriginBacklog:
        backlog = self.backlogs.get(origin)
        if backlog is None:
            feed = JobFeed(self.redis, backlog_feed_name(self.pipeline, origin), worker_id=self.worker_id)
            backlog = self.backlogs[origin] = OriginBacklog(origin, feed, self.deliverer, self.metrics)
            if self.running:
                backlog.start()
                backlog.greenlet.link_exception(_crash)
        return backlog

    def holders(self) -> list[tuple[JobFeed, Callable[[], list[str]]]]:
        """Each origin's backlog feed and the records its drainer holds: the service's
        heartbeat renews them and its reclaimer takes back a dead process's."""
        return [(backlog.feed, backlog.held_ids) for backlog in list(self.backlogs.values())]

    def is_down(self, origin: str) -> bool:
        backlog = self.backlogs.get(origin)
        return backlog is not None and backlog.down

    def hold(
        self, origin: str, requests: list[PushRequest], reason: str, failed: bool, retry_after: float | None
    ) -> None:
        new = origin not in self.backlogs
        backlog = self._backlog(origin)
        # Down (and the drainer told to wait) before the first Redis call yields: a
        # batch running meanwhile must queue behind these, not overtake them.
        index = (lambda: self.redis.sadd(backlog_index_key(self.pipeline), origin)) if new else None
        backlog.hold(requests, reason, failed, retry_after, before_put=index)

    def stop(self) -> None:
        self.running = False
        for backlog in self.backlogs.values():
            backlog.stopping = True  # all at once: each stops within a second
        for backlog in self.backlogs.values():
            backlog.stop()


def _crash(greenlet) -> None:
    """A drainer that dies would leave its origin's messages held forever: take the
    process down instead, so systemd restarts it and the drainer with it."""
    log.critical("a webpush backlog drainer died: %s; exiting", greenlet.exception)
    logging.shutdown()
    os._exit(70)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
