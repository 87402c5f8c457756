"""http: publish the message to every push node at once.

The job is done when every node has the message, holds it in that node's
backlog, or refused it for good (then it is in that node's dead-letter):
one failing node never holds up the others, and never loses a message. A
message every node refuses is stalled with their answers.

Order: a channel's messages are sent to each node in claim order (the
pipelined client keeps a channel on one connection). What a node did not
take is written to its backlog in that same order, even when several
batches are in flight: each batch writes its holds only after the batch
before it has written its own (a chain of turns), and once a node has
failed, every later message for it queues in the backlog behind those.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import gevent
import gevent.event
from redis.exceptions import RedisError

from ..backoff import Backoff
from ..errors import ConfigError, PublishFailed, PublishRefused, Reject, TransientFailure
from ..jobqueue import JobFeed
from ..message import Message
from ..stage import Stage
from ..supervisor import idle, pause, spawn_part
from .backlog import DEFAULT_MAX_AGE, DEFAULT_MAX_MESSAGES, NodeBacklog, backlog_feed_name, record
from .push_node import PushNode

log = logging.getLogger(__name__)


class HttpPublish(Stage):
    name = "http"

    def configure(self) -> None:
        urls = self.string_list("nodes", [])
        if not urls:
            raise ConfigError("nodes", "at least one push node URL is needed")
        timeout = self.option("timeout", float, 5.0, lambda v: v > 0, "must be positive")
        self.timeout = timeout
        # Keep-alive connections per node; a channel always uses the same one.
        connections = self.option("connections", int, 8, lambda v: v > 0, "must be positive")
        # A node cannot serve a message older than its message TTL: its backlog drops those.
        max_age = self.option("message_ttl", float, DEFAULT_MAX_AGE, lambda v: v > 0, "seconds > 0")
        max_messages = self.option(
            "backlog_limit", int, DEFAULT_MAX_MESSAGES, lambda v: v > 0, "must be positive"
        )
        metrics = self.context.metrics
        self.nodes = []
        for url in urls:
            try:
                self.nodes.append(
                    PushNode(
                        url,
                        timeout=timeout,
                        connections=connections,
                        metrics=metrics,
                        spawn=lambda run, url=url: spawn_part(
                            self.context.supervisor, f"connection writer to {PushNode.label_of(url)}", run
                        ),
                    )
                )
            except ValueError as exc:
                raise ConfigError("nodes", str(exc)) from None
        self.backlogs: dict[str, NodeBacklog] = {}
        if self.context.redis is not None:
            for node in self.nodes:
                feed = JobFeed(
                    self.context.redis,
                    backlog_feed_name(self.context.pipeline, node.label),
                    worker_id=self.context.worker_id or None,
                )
                self.backlogs[node.label] = NodeBacklog(
                    node, feed, metrics=metrics, max_age=max_age, max_messages=max_messages
                )
        # The turn of the last batch to write its holds; the next batch waits for it.
        self._last_turn = gevent.event.Event()
        self._last_turn.set()
        self.stopping = False

    def start(self) -> None:
        for backlog in self.backlogs.values():
            backlog.start(self.context.supervisor)

    def backlog_feeds(self) -> list[JobFeed]:
        return [b.feed for b in self.backlogs.values()]

    def backlog_holders(self) -> list[tuple[JobFeed, Callable[[], list[str]]]]:
        """Each backlog's feed and the records its drainer holds (for the heartbeat)."""
        return [(b.feed, b.held_ids) for b in self.backlogs.values()]

    def dead_letter_feeds(self) -> dict[str, JobFeed]:
        """Each node's dead-letter (its backlog feed's stalled set), by node."""
        return {label: backlog.feed for label, backlog in self.backlogs.items()}

    def status(self) -> dict:
        backlogs = self.backlogs.items()
        return {
            "backlog": {label: backlog.depth() for label, backlog in backlogs},
            "dead_letters": {label: backlog.dead_letter_count() for label, backlog in backlogs},
            "backlog_dropped": {label: backlog.feed.dropped_counts() for label, backlog in backlogs},
            "backlog_limit": next(iter(self.backlogs.values())).max_messages if self.backlogs else None,
        }

    def process(self, message: Message) -> Message:
        (error,) = self.process_batch([message])
        if error is not None:
            raise error
        return message

    def process_batch(self, messages: list[Message]) -> list[Exception | None]:
        """Publish a batch: every POST is queued first, then the answers are awaited.

        Returns, per message, None or the error that fails it. A node that
        fails (or is known down) gets the message in its backlog instead.
        """
        errors: list[Exception | None] = [None] * len(messages)
        # Taking the turn and queueing every POST happen without yielding, so
        # batches hold in the order they were sent.
        previous, mine = self._last_turn, gevent.event.Event()
        self._last_turn = mine
        sent = []
        # Per node: (index, reason) of each message for its backlog, in batch order.
        to_hold: dict[str, list[tuple[int, str]]] = {label: [] for label in self.backlogs}
        for index, message in enumerate(messages):
            if message.body is None:
                errors[index] = Reject("http: the message has no body (put a format stage before http)")
                continue
            problem = PushNode.unsendable(message.channel, message.event_id)
            if problem:
                errors[index] = Reject(f"http: {problem}")
                continue
            for node in self.nodes:
                backlog = self.backlogs.get(node.label)
                if backlog is not None and backlog.down:
                    # Queue behind the held messages so the node gets them in order.
                    to_hold[node.label].append((index, "node is down"))
                    backlog.pending_holds += 1
                else:
                    sent.append(
                        (index, node, node.start_publish(message.channel, message.event_id, message.body))
                    )
        refusals: dict[int, list[PublishRefused]] = {}
        deadline = time.monotonic() + self.timeout
        for index, node, pending in sent:
            try:
                node.finish_publish(pending, max(0.0, deadline - time.monotonic()))
            except PublishRefused as exc:
                refusals.setdefault(index, []).append(exc)
            except PublishFailed as exc:
                backlog = self.backlogs.get(node.label)
                if backlog is None:
                    errors[index] = exc
                    continue
                backlog.down = True  # later batches queue behind this one at once
                backlog.pending_holds += 1
                to_hold[node.label].append((index, str(exc)))
        with idle():  # the batch before this one is watched itself
            previous.wait()
        try:
            self._refused(messages, refusals, errors)
            for label, held in to_hold.items():
                if held:
                    self._hold(self.backlogs[label], messages, sorted(held), errors)
        finally:
            # Written, given up, or the batch was killed: either way no longer pending.
            for label, held in to_hold.items():
                self.backlogs[label].pending_holds -= len(held)
            mine.set()
        return errors

    def _refused(self, messages: list[Message], refusals: dict, errors: list) -> None:
        """A message refused for good: dead-lettered at each node that refused it, or the
        job stalled with the answers when every node did (no node has it)."""
        for index, refused in sorted(refusals.items()):
            message = messages[index]
            if len(refused) == len(self.nodes) or not self.backlogs:
                answers = "; ".join(str(exc) for exc in refused)
                errors[index] = (
                    PublishRefused(
                        refused[0].node, refused[0].status, f"every push node refused the message: {answers}"
                    )
                    if len(refused) > 1
                    else refused[0]
                )
                continue
            for exc in refused:
                backlog = self.backlogs[exc.node]
                failure = self._retry_redis(
                    backlog, backlog.dead_letter, message.channel, message.event_id, message.body, exc
                )
                if failure is not None:
                    errors[index] = TransientFailure(
                        f"http: cannot dead-letter the message for {exc.node}: {failure}"
                    )

    def _hold(
        self, backlog: NodeBacklog, messages: list[Message], held: list[tuple[int, str]], errors: list
    ) -> None:
        # The event id (the job's id) names the record, so a hold retried after a lost reply,
        # or the same job held again after a reclaim, is in the backlog once.
        records = [
            (
                messages[i].event_id or uuid.uuid4().hex,
                record(messages[i].channel, messages[i].event_id, messages[i].body),
            )
            for i, _ in held
        ]
        failure = self._retry_redis(backlog, backlog.hold, records, held[0][1])
        if failure is not None:
            for index, _ in held:
                errors[index] = TransientFailure(
                    f"http: cannot hold the message for {backlog.node.label}: {failure}"
                )

    def _retry_redis(self, backlog: NodeBacklog, write, *args) -> Exception | None:
        """Run a Redis write until it succeeds (Redis away: backoff); None, or the last error
        if the glue is stopping meanwhile (the job is then given back)."""
        backoff = Backoff()
        while True:
            try:
                write(*args)
                return None
            except (RedisError, OSError) as exc:
                if self.stopping:
                    return exc
                log.warning("cannot write to the backlog (%s); retrying", exc, extra=backlog.fields)
                pause(backoff.failed())

    def close(self) -> None:
        self.stopping = True
        for backlog in self.backlogs.values():
            backlog.stop()
        for node in self.nodes:
            node.close()
