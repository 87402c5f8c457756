"""The one greenlet that sends to one push node, in claim order: straight to the node while it
takes messages, through its backlog (a Thoonk job feed in Redis) while it does not.

Every message for the node passes through this sender's inbox in the order
the batches submitted them, so order does not depend on which batch finishes
first. Two modes:

- live: whatever is in the inbox is pipelined to the node (a channel stays on
  one connection); what the node takes is done, what it refuses for good
  (4xx) is reported back (the http stage dead-letters it), and what fails
  (5xx, 408, 429, no answer, no connection) is held in the backlog, in order,
  and the sender switches to backlog mode.
- backlog: the backlog is delivered oldest first, a channel's records one at a
  time (the channels of a batch side by side), so a record that fails stops
  its channel there and nothing of that channel overtakes it; only failed
  records are sent again. New messages wait in the inbox meanwhile (their jobs
  wait, which slows claiming: backpressure), or, while the node keeps failing,
  are held behind the backlog so their jobs can finish. Once the backlog is
  empty, nothing older than the inbox is left anywhere: the sender goes live.
  The node is never "up" and "draining" at once, so no race decides the order.

The backlog is shared by every glue instance of the pipeline (a partitioned
feed read by several), and one sender drains it at a time: the holder of its
drain lease (lease.py on the backlog's feed: taken only once no record is
claimed, so a new holder never overtakes records an old one still sends).
The others hold what the node refuses behind it and go live only once the
backlog is empty, claimed records included: a channel's held messages reach
the node before its next ones, whichever instance put them there. A live sender
of an instance that takes a partition over looks at the backlog first
(`look_at_backlog`): what the partition's last holder left there goes first.

The backlog is bounded: records older than the node's message TTL are
dropped (the node could not serve them any more), and beyond `max_messages`
the oldest are dropped; both are counted, logged and exported.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import gevent.event
from gevent.event import AsyncResult
from redis.exceptions import ResponseError

from ..actor import Actor
from ..backoff import Backoff
from ..errors import PublishFailed, PublishRefused, Reject, TransientFailure
from ..jobqueue import ClaimedJob, JobFeed, JobState
from ..lease import FeedLease
from ..logs import fields
from ..supervisor import idle, pause, progress
from .push_node import PushNode

log = logging.getLogger(__name__)

BATCH = 64
# How often a live sender looks for records put in its backlog from outside (seconds).
BACKLOG_CHECK_INTERVAL = 5.0
DEFAULT_MAX_AGE = 300.0  # push_stream_message_ttl's default, 5m
DEFAULT_MAX_MESSAGES = 100_000
# Seconds a backlog's drain lease outlives its holder (renewed with each batch it drains).
DRAIN_LEASE_TTL = 10.0
# How often a sender that does not hold the drain lease looks again (seconds).
DRAIN_WAIT = 0.2
# The longest wait between two tries of a failing node (seconds). A try is one POST (a refused
# connection while the node is down), so trying often costs nothing; waiting longer left a node
# back from a 5-second restart without what it missed for up to 7 s more, while it answered its
# health checks and its subscribers came back to it.
NODE_RETRY_MAX = 2.0


def backlog_feed_name(pipeline: str, node_label: str) -> str:
    return f"glue.backlog:{pipeline}:{node_label}"


def record(channel: str, event_id: str | None, body: bytes) -> str:
    return json.dumps(
        {"channel": channel, "event_id": event_id, "body": body.decode()}, separators=(",", ":")
    )


class Sent(enum.Enum):
    """What became of a message handed to a node's sender."""

    DELIVERED = "delivered"  # the node has it
    HELD = "held"  # it is in the node's backlog (in Redis), delivered later in order
    REFUSED = "refused"  # the node refused it for good; the result carries the PublishRefused


@dataclass
class Delivery:
    channel: str
    event_id: str | None
    body: bytes
    # Set to (Sent, PublishRefused | None); an exception (TransientFailure) if the glue
    # stopped before the message could be delivered or held.
    result: AsyncResult = field(default_factory=AsyncResult)

    @property
    def record_id(self) -> str:
        # The event id (the job's id) names the record, so a hold retried after a lost
        # reply, or the same job held again after a reclaim, is in the backlog once.
        return self.event_id or f"{self.channel}:{id(self)}"


class NodeSender(Actor):
    def __init__(
        self,
        node: PushNode,
        feed: JobFeed,
        metrics=None,
        min_backoff: float = 0.2,
        max_backoff: float = NODE_RETRY_MAX,
        max_age: float = DEFAULT_MAX_AGE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        drain_lease: FeedLease | None = None,
    ):
        """`drain_lease`: the backlog's drain lease, when other instances may share the
        backlog (None: this sender drains alone)."""
        super().__init__(name=f"sender to {node.label}")
        self.node = node
        self.feed = feed
        self.metrics = metrics
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.max_age = max_age
        self.max_messages = max_messages
        self.inbox: deque[Delivery] = deque()
        self.wakeup = gevent.event.Event()
        # Live: straight to the node. Not live: through the backlog. A backlog left by an
        # earlier process drains before anything new is sent, so it starts not live.
        self.live = False
        # The node failed the last time it was tried (new messages are then held at once).
        self.failing = False
        # The records claimed from the backlog and not yet settled (their leases are renewed).
        self.holding: list[str] = []
        self.drain_lease = drain_lease
        self._drain_settled = False  # since taking the drain lease, no record was claimed
        self._full = False
        self._next_backlog_check = 0.0
        # A partition came over from another instance: look at the backlog before sending on.
        self._look_now = False
        # The last drain delivered (or dead-lettered) records before a failure stopped it.
        self._drained_before_failing = False
        self.fields = fields(node=node.label)

    # --- what the http stage uses ---------------------------------------------------------
    def submit(self, channel: str, event_id: str | None, body: bytes) -> AsyncResult:
        """Queue a message for the node (never yields: submissions keep their order)."""
        delivery = Delivery(channel, event_id, body)
        self.inbox.append(delivery)
        self.wakeup.set()
        return delivery.result

    def dead_letter(self, channel: str, event_id: str | None, body: bytes, refusal: PublishRefused) -> None:
        """The node refused this message for good: keep it in the node's dead-letter."""
        self.feed.bury(record(channel, event_id, body), refusal.reason, job_id=event_id)
        self._count_dead_letter(event_id, refusal.reason)

    def look_at_backlog(self) -> None:
        """Before this sender sends anything more live, it looks at the backlog: records held
        there (or being drained) by the instance that held a partition now taken over go
        to the node before that partition's next messages (called before it is claimed from)."""
        self._look_now = True
        self.wakeup.set()

    # --- what status and the heartbeat read -------------------------------------------------
    def held_ids(self) -> list[str]:
        return list(self.holding)

    def depth(self) -> int:
        counts = self.feed.counts()
        return counts["ready"] + counts["claimed"]

    def dead_letter_count(self) -> int:
        return self.feed.counts()["stalled"]

    # --- the sender -----------------------------------------------------------------------
    def run(self) -> None:
        backoff = Backoff(self.min_backoff, self.max_backoff)
        while not self.stopping:
            progress()
            self._drained_before_failing = False
            try:
                if self.live:
                    self._send_live()
                else:
                    self._deliver_backlog()
                    backoff.succeeded()
                continue
            except PublishFailed as exc:
                if self._drained_before_failing:
                    # The node took backlog records before this one failed: a new fault, not
                    # the same one again, so the wait starts over from the shortest (a node
                    # refusing one record in ten must not slow the drain to max_backoff).
                    backoff.succeeded()
                delay = backoff.failed()
                log.info("%s: %s; retrying in %.1fs", self.name, exc, delay, extra=self.fields)
            except Exception as exc:  # Redis away: the same backoff, never a busy loop
                delay = backoff.failed()
                log.warning(
                    "%s: %s: %s; retrying in %.1fs",
                    self.name,
                    type(exc).__name__,
                    exc,
                    delay,
                    extra=self.fields,
                )
            self._wait(delay)

    def _wait(self, seconds: float) -> None:
        """Back off, holding what arrives meanwhile while the node keeps failing."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            if self.failing and self.inbox:
                try:
                    self._hold_inbox()
                except Exception as exc:  # Redis away too: they wait in the inbox
                    log.warning("%s: cannot hold (%s)", self.name, exc, extra=self.fields)
                    pause(left)
                    return
            self.wakeup.clear()
            with idle():
                self.wakeup.wait(left)

    def _backlog_waiting(self) -> bool:
        try:
            return self.feed.count_by_state()[JobState.READY] > 0
        except Exception:  # Redis away: the live path does not need it
            return False

    def _take(self) -> list[Delivery]:
        taken = list(self.inbox)
        self.inbox.clear()
        return taken

    def _hold_inbox(self) -> None:
        """Hold what waits in the inbox; it leaves the inbox only once it is in Redis."""
        waiting = list(self.inbox)
        self._hold(waiting)
        for _ in waiting:
            self.inbox.popleft()

    def _send_live(self) -> None:
        with idle():  # an empty inbox is a wait by choice
            self.wakeup.wait(1.0)
        self.wakeup.clear()
        if self._look_now:
            # Ready or claimed by another instance's drain: either way older than what the
            # inbox may now hold of a partition taken over. Redis away: this raises, and the
            # sender looks again after its backoff, sending nothing meanwhile.
            counts = self.feed.counts()
            self._look_now = False
            if counts["ready"] + counts["claimed"] > 0:
                self.live = False
                return
        if time.monotonic() >= self._next_backlog_check:
            # Records can reach the backlog from outside (`realtime-glue retry --node`).
            self._next_backlog_check = time.monotonic() + BACKLOG_CHECK_INTERVAL
            if self._backlog_waiting():
                self.live = False
                return
        deliveries = self._take()
        if not deliveries:
            return
        sent = [(d, self.node.start_publish(d.channel, d.event_id, d.body)) for d in deliveries]
        deadline = time.monotonic() + self.node.timeout
        # One wait and one deadline for the whole batch: a connection answers in the order it
        # was written, so once the last request of each connection is answered, every earlier
        # one is too, and the loop below reads answers without waiting (a timer and a wake-up
        # per message cost more CPU than the message at everyday rates).
        self.node.wait_for_answers([pending for _, pending in sent], self.node.timeout)
        failed: list[Delivery] = []
        reason = ""
        for delivery, pending in sent:
            try:
                self.node.finish_publish(pending, max(0.0, deadline - time.monotonic()))
                delivery.result.set((Sent.DELIVERED, None))
            except PublishRefused as exc:
                delivery.result.set((Sent.REFUSED, exc))
            except (PublishFailed, Reject) as exc:
                failed.append(delivery)
                reason = reason or str(exc)
        if failed:
            log.warning(
                "push node %s is failing (%s); holding its messages in the backlog",
                self.node.label,
                reason,
                extra=self.fields,
            )
            self.live = False
            self.failing = True
            # Behind these come what arrived meanwhile (next round): the order holds.
            self._hold_until_written(failed)

    def _deliver_backlog(self) -> None:
        if self.failing and self.inbox:
            self._hold_inbox()  # behind the backlog, so their jobs can finish
        self._trim()
        if not self._may_drain():
            # Another instance drains it: this one goes live once nothing is held or in flight.
            counts = self.feed.counts()
            if counts["ready"] + counts["claimed"] == 0:
                self._go_live()
            else:
                self._wait(DRAIN_WAIT)
            return
        try:
            if self.drain_lease is None:
                jobs = self.feed.claim(BATCH)
            else:  # fenced: a sender whose lease another one took claims nothing
                jobs = self.feed.claim(BATCH, lease_token=self.drain_lease.token)
        except ResponseError as exc:
            if not str(exc).startswith("FENCED"):
                raise
            self.drain_lease.lost()  # another instance took the lease over: it drains now
            return
        if not jobs:
            # Nothing older than the inbox is left: what waits there goes straight on.
            if self.drain_lease is not None:
                self.drain_lease.release()
            self._go_live()
            return
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
            self.failing = True
            self._drained_before_failing = bool(delivered or refused)
            raise failure
        self.failing = False

    def _may_drain(self) -> bool:
        """Whether this sender may drain the backlog now: it holds the drain lease (renewed),
        or took it and no record is claimed (an earlier holder's records are all settled)."""
        lease = self.drain_lease
        if lease is None:
            return True
        if lease.token is None:
            if not lease.acquire():
                return False
            self._drain_settled = False
        elif not lease.renew():
            return False  # lost (expired, taken over): try to take it again next time
        if not self._drain_settled:
            self._drain_settled = lease.settled()
        return self._drain_settled

    def _go_live(self) -> None:
        if self.failing:
            log.warning("push node %s is delivering again; backlog empty", self.node.label, extra=self.fields)
        self.live = True
        self.failing = False
        self._report_depth(0)
        self.wakeup.set()

    def _deliver(
        self, channels: dict[str, deque], delivered: list[str], refused: list
    ) -> PublishFailed | None:
        """Each channel's next record, all channels at once, until each is done or failed."""
        failure = None
        while channels:
            progress()
            sent = [(queue[0], self.node.start_publish(*queue[0][1:])) for queue in channels.values()]
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
                        del channels[channel]  # the rest of this channel waits, in order
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

    def _hold(self, deliveries: list[Delivery]) -> None:
        """Write messages to the backlog in order (one round trip); their jobs can then finish."""
        if not deliveries:
            return
        self.feed.put_many(
            [record(d.channel, d.event_id, d.body) for d in deliveries], ids=[d.record_id for d in deliveries]
        )
        for delivery in deliveries:
            delivery.result.set((Sent.HELD, None))
        self._trim()

    def _hold_until_written(self, deliveries: list[Delivery]) -> None:
        """Hold, retrying while Redis is away; if the glue stops first, the jobs are given back."""
        backoff = Backoff()
        while True:
            progress()
            try:
                self._hold(deliveries)
                return
            except Exception as exc:
                if self.stopping:
                    for delivery in deliveries:
                        delivery.result.set_exception(
                            TransientFailure(f"http: cannot hold the message for {self.node.label}: {exc}")
                        )
                    return
                log.warning("%s: cannot hold (%s); retrying", self.name, exc, extra=self.fields)
                pause(backoff.failed())

    def stop(self, timeout: float | None = 5.0) -> None:
        super().stop(timeout)
        if self.drain_lease is not None and self.drain_lease.token is not None:
            try:
                self.drain_lease.release()  # another instance drains at once, not after the ttl
            except Exception as exc:
                log.warning("%s: cannot release the drain lease (%s)", self.name, exc, extra=self.fields)
        # Whatever is still waiting never reached the node: its jobs are given back.
        for delivery in self._take():
            if not delivery.result.ready():
                delivery.result.set_exception(TransientFailure(f"http: {self.name} stopped"))

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
