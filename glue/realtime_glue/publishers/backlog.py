"""The failed-publish backlog: a Thoonk job feed per push node, drained with backoff.

While a node fails, its messages wait here (in Redis, so a restart loses
none) and new messages queue behind them; the other nodes carry on. The
drainer retries the oldest first with exponential backoff, and marks the
node up again once its backlog is empty.
"""

from __future__ import annotations

import json
import logging

import gevent

from ..actor import Actor
from ..backoff import backoff_delay
from ..errors import PublishFailed
from ..jobqueue import JobFeed
from .push_node import PushNode

log = logging.getLogger(__name__)

BATCH = 64


def backlog_feed_name(pipeline: str, node_label: str) -> str:
    return f"glue.backlog:{pipeline}:{node_label}"


class NodeBacklog(Actor):
    """Holds one node's undelivered messages and delivers them when it can."""

    def __init__(
        self,
        node: PushNode,
        feed: JobFeed,
        metrics=None,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
    ):
        super().__init__(name=f"backlog {node.label}")
        self.node = node
        self.feed = feed
        self.metrics = metrics
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.down = False
        # The records this drainer has claimed and not yet settled (their leases are renewed).
        self.holding: list[str] = []
        # The records this drainer has claimed and not yet settled (their leases are renewed).
        self.holding: list[str] = []

    def hold(self, channel: str, event_id: str | None, body: bytes, reason: str) -> None:
        """Keep a message the node did not take; it is safe in Redis on return."""
        if not self.down:
            log.warning(
                "push node %s is failing (%s); holding its messages in the backlog", self.node.label, reason
            )
        self.down = True
        record = {"channel": channel, "event_id": event_id, "body": body.decode()}
        self.feed.put(json.dumps(record, separators=(",", ":")))

    def held_ids(self) -> list[str]:
        return list(self.holding)

    def depth(self) -> int:
        counts = self.feed.counts()
        return counts["ready"] + counts["claimed"]

    def run(self) -> None:
        failures = 0
        while not self.stopping:
            try:
                delivered = self.drain_once()
                if delivered == 0:
                    if self.down:
                        log.warning("push node %s is delivering again; backlog empty", self.node.label)
                    self.down = False
                    self._report_depth(0)
                    self.feed.wait_for_jobs(timeout=1.0)
                failures = 0
                continue
            except PublishFailed as exc:
                delay = backoff_delay(failures, self.min_backoff, self.max_backoff)
                log.info("backlog for %s: %s; retrying in %.1fs", self.node.label, exc, delay)
            except Exception as exc:  # Redis away: the same backoff, never a busy loop
                delay = backoff_delay(failures, self.min_backoff, self.max_backoff)
                log.warning(
                    "backlog for %s: cannot reach Redis (%s); retrying in %.1fs", self.node.label, exc, delay
                )
            self.sleep(delay)
            failures += 1

    def drain_once(self) -> int:
        """Deliver up to BATCH held messages in order; returns how many.

        The POSTs are queued together (a channel's go over one pipelined
        connection, in order) and their answers read in order; the first
        failure leaves it and everything after it in the backlog.
        """
        jobs = self.feed.claim(BATCH)
        if not jobs:
            return 0
        self.holding = [job.id for job in jobs]
        delivered: list[str] = []
        sent = []
        try:
            for job in jobs:
                try:
                    record = json.loads(job.item)
                    channel, event_id, body = record["channel"], record["event_id"], record["body"].encode()
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    # Not written by us: keep it for an operator, never retry it forever.
                    self.feed.stall(job.id, f"backlog record is unreadable: {type(exc).__name__}: {exc}")
                    delivered.append(job.id)
                    continue
                problem = PushNode.unsendable(channel, event_id)
                if problem:
                    self.feed.stall(job.id, f"backlog record: {problem}")
                    delivered.append(job.id)
                    continue
                sent.append((job.id, self.node.start_publish(channel, event_id, body)))
            for job_id, pending in sent:
                self.node.finish_publish(pending, self.node.timeout)
                delivered.append(job_id)
        finally:
            self.feed.finish(delivered)
            done = set(delivered)
            self.feed.release([j.id for j in jobs if j.id not in done])
            self.holding = []
            self._report_depth(self.depth())
        return len(delivered)

    def _report_depth(self, depth: int) -> None:
        if self.metrics is not None:
            self.metrics.backlog_depth.labels(node=self.node.label).set(depth)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)
