"""One push node's backlog: a Thoonk job feed in Redis holding what the node did not take.

While a node fails, its messages wait here (in Redis, so a restart loses
none) and new messages queue behind them; the other nodes carry on. The
drainer delivers the oldest first with backoff, and marks the node up again
once its backlog is empty.

- Order: a channel's records are delivered one at a time (the channels of a
  batch side by side), so a record that fails stops its channel there and
  nothing of that channel overtakes it. Only failed records are sent again.
- A record the node refuses for good (4xx) goes to the node's dead-letter,
  the feed's stalled set, with the node's answer; the rest carry on.
- Bounded: records older than the node's message TTL are dropped (the node
  could not serve them any more), and beyond `max_messages` the oldest are
  dropped; both are counted, logged and exported.
"""

from __future__ import annotations

import json
import logging
from collections import deque

from ..actor import Actor
from ..backoff import Backoff
from ..errors import PublishFailed, PublishRefused, Reject
from ..jobqueue import ClaimedJob, JobFeed
from ..logs import fields
from ..supervisor import pause, progress
from .push_node import PushNode

log = logging.getLogger(__name__)

BATCH = 64
DEFAULT_MAX_AGE = 300.0  # push_stream_message_ttl's default, 5m
DEFAULT_MAX_MESSAGES = 100_000


def backlog_feed_name(pipeline: str, node_label: str) -> str:
    return f"glue.backlog:{pipeline}:{node_label}"


def record(channel: str, event_id: str | None, body: bytes) -> str:
    return json.dumps(
        {"channel": channel, "event_id": event_id, "body": body.decode()}, separators=(",", ":")
    )


class NodeBacklog(Actor):
    """Holds one node's undelivered messages and delivers them when it can."""

    def __init__(
        self,
        node: PushNode,
        feed: JobFeed,
        metrics=None,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
        max_age: float = DEFAULT_MAX_AGE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
    ):
        super().__init__(name=f"backlog {node.label}")
        self.node = node
        self.feed = feed
        self.metrics = metrics
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.max_age = max_age
        self.max_messages = max_messages
        # While down, new messages for the node queue here behind the held ones.
        self.down = False
        # Messages routed here (or found failed) whose hold is not written yet,
        # and holds written so far: the drainer marks the node up only when
        # neither moved while it found the backlog empty.
        self.pending_holds = 0
        self.holds_written = 0
        # The records this drainer has claimed and not yet settled (their leases are renewed).
        self.holding: list[str] = []
        self._full = False
        self.fields = fields(node=node.label)

    def start(self, *args, **kwargs) -> NodeBacklog:
        # A backlog left by an earlier process drains before anything new is sent
        # straight to the node; the drainer marks the node up once it finds none.
        self.down = True
        return super().start(*args, **kwargs)

    # --- what the http stage hands over ---------------------------------------------------
    def hold(self, records: list[tuple[str, str]], reason: str) -> None:
        """Keep messages the node did not take, in order, as (id, record) pairs; safe in
        Redis on return. Holding the same id twice (a retry after a lost reply) holds it once."""
        if not self.down:
            log.warning(
                "push node %s is failing (%s); holding its messages in the backlog",
                self.node.label,
                reason,
                extra=self.fields,
            )
        self.down = True
        self.feed.put_many([r for _, r in records], ids=[i for i, _ in records])
        self.holds_written += 1
        self._trim()

    def dead_letter(self, channel: str, event_id: str | None, body: bytes, refusal: PublishRefused) -> None:
        """The node refused this message for good: keep it in the node's dead-letter."""
        self.feed.bury(record(channel, event_id, body), refusal.reason, job_id=event_id)
        self._count_dead_letter(event_id, refusal.reason)

    def _count_dead_letter(self, event_id: str | None, reason: str) -> None:
        log.error(
            "push node %s refused message %s for good (%s); it is in the node's dead-letter",
            self.node.label,
            event_id,
            reason,
            extra=fields(job=event_id, node=self.node.label),
        )
        if self.metrics is not None:
            self.metrics.dead_letters.labels(node=self.node.label).inc()

    # --- what status shows ----------------------------------------------------------------
    def held_ids(self) -> list[str]:
        return list(self.holding)

    def depth(self) -> int:
        counts = self.feed.counts()
        return counts["ready"] + counts["claimed"]

    def dead_letter_count(self) -> int:
        return self.feed.counts()["stalled"]

    # --- the drainer ----------------------------------------------------------------------
    def run(self) -> None:
        backoff = Backoff(self.min_backoff, self.max_backoff)
        while not self.stopping:
            progress()
            try:
                writes = self.holds_written
                delivered = self.drain_once()
                backoff.succeeded()
                if delivered == 0:
                    if self.pending_holds == 0 and self.holds_written == writes:
                        if self.down:
                            log.warning(
                                "push node %s is delivering again; backlog empty",
                                self.node.label,
                                extra=self.fields,
                            )
                        self.down = False
                    self._report_depth(0)
                    self.feed.wait_for_jobs(timeout=1.0)
                continue
            except PublishFailed as exc:
                delay = backoff.failed()
                log.info(
                    "backlog for %s: %s; retrying in %.1fs", self.node.label, exc, delay, extra=self.fields
                )
            except Exception as exc:  # Redis away: the same backoff, never a busy loop
                delay = backoff.failed()
                log.warning(
                    "backlog for %s: %s: %s; retrying in %.1fs",
                    self.node.label,
                    type(exc).__name__,
                    exc,
                    delay,
                )
            self.sleep(delay)

    def drain_once(self) -> int:
        """Deliver up to BATCH held records; returns how many left the backlog.

        Raises PublishFailed (after settling what it could) when the node
        failed a record: that record and the rest of its channel stay, in order.
        """
        self._trim()
        jobs = self.feed.claim(BATCH)
        if not jobs:
            return 0
        self.holding = [job.id for job in jobs]
        delivered: list[str] = []
        refused: list[tuple[str, str]] = []
        failure: PublishFailed | None = None
        try:
            channels: dict[str, deque] = {}
            for job in jobs:
                try:
                    parsed = json.loads(job.item)
                    channel, event_id = parsed["channel"], parsed["event_id"]
                    body = parsed["body"].encode()
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    # Not written by us: keep it for an operator, never retry it forever.
                    refused.append((job.id, f"backlog record is unreadable: {type(exc).__name__}: {exc}"))
                    continue
                problem = PushNode.unsendable(channel, event_id)
                if problem:
                    refused.append((job.id, f"backlog record: {problem}"))
                    continue
                channels.setdefault(channel, deque()).append((job, channel, event_id, body))
            failure = self._deliver(channels, delivered, refused)
        finally:
            self._settle(jobs, delivered, refused)
        if failure is not None:
            raise failure
        return len(delivered) + len(refused)

    def _deliver(
        self, channels: dict[str, deque], delivered: list[str], refused: list
    ) -> PublishFailed | None:
        """Each channel's next record, all channels at once, until each is done or failed."""
        failure = None
        while channels:
            sent = [(queue[0], self.node.start_publish(*queue[0][1:])) for queue in channels.values()]
            progress()
            for (job, channel, event_id, _body), pending in sent:
                queue = channels[channel]
                try:
                    self.node.finish_publish(pending, self.node.timeout)
                except PublishRefused as exc:
                    refused.append((job.id, exc.reason))
                    self._count_dead_letter(event_id, exc.reason)
                except (PublishFailed, Reject) as exc:
                    if isinstance(exc, Reject):
                        refused.append((job.id, str(exc)))
                    else:
                        failure = failure or exc
                        del channels[channel]  # this channel waits for the next round, in order
                        continue
                else:
                    delivered.append(job.id)
                queue.popleft()
                if not queue:
                    del channels[channel]
        return failure

    def _settle(self, jobs: list[ClaimedJob], delivered: list[str], refused: list[tuple[str, str]]) -> None:
        try:
            self.feed.finish(delivered)
            for job_id, reason in refused:
                self.feed.stall(job_id, reason)
            done = set(delivered) | {job_id for job_id, _ in refused}
            # What is left goes back to the front, in its order.
            self.feed.release([job.id for job in jobs if job.id not in done])
        finally:
            self.holding = []
        self._report_depth(self.depth())

    def _trim(self) -> None:
        expired, full = self.feed.trim(self.max_age, self.max_messages)
        if expired:
            log.warning(
                "backlog for %s: dropped %d messages held longer than the node's message TTL (%gs)",
                self.node.label,
                expired,
                self.max_age,
                extra=self.fields,
            )
        if full and not self._full:
            log.error(
                "backlog for %s is FULL (%d messages): dropping the oldest; the node has been failing "
                "long enough to fill it",
                self.node.label,
                self.max_messages,
                extra=self.fields,
            )
        self._full = bool(full)
        if self.metrics is not None:
            if expired:
                self.metrics.backlog_dropped.labels(node=self.node.label, reason="expired").inc(expired)
            if full:
                self.metrics.backlog_dropped.labels(node=self.node.label, reason="full").inc(full)

    def _report_depth(self, depth: int) -> None:
        if self.metrics is not None:
            self.metrics.backlog_depth.labels(node=self.node.label).set(depth)

    def sleep(self, seconds: float) -> None:
        pause(seconds)
