"""http: publish the message to every push node at once.

Each node has its own sender (node_sender.py), the one greenlet that sends to
it, in claim order: straight to the node while it takes messages, through its
backlog in Redis while it does not. A batch hands each message to every
node's sender without yielding (so batches keep their order on every node)
and waits for what became of it.

The job is done when every node has the message, holds it in its backlog,
or refused it for good (then it is in that node's dead-letter): one failing
node never holds up the others, and never loses a message. A message every
node refuses is stalled with their answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
from redis.exceptions import RedisError

from ..backoff import Backoff
from ..errors import ConfigError, PublishFailed, PublishRefused, Reject, TransientFailure
from ..http_client import ca_file_problem
from ..jobqueue import JobFeed
from ..lease import FeedLease
from ..message import Message
from ..stage import Stage
from ..supervisor import idle, pause, spawn_part
from .node_sender import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_MESSAGES,
    DRAIN_LEASE_TTL,
    NodeSender,
    Sent,
    backlog_feed_name,
)
from .push_node import PushNode

# The push_stream role's push_stream_max_message_size (64k).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024

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
        # The nodes' client_max_body_size ([push] max_message_size): every node would
        # answer 413 to a larger body, so it is refused here, before it is sent.
        self.max_message_size = self.option(
            "max_message_size", int, DEFAULT_MAX_MESSAGE_SIZE, lambda v: v > 0, "bytes > 0"
        )
        # The CA that signed the https:// nodes' certificates ([push] ca_file);
        # empty: the system's trust store.
        ca_file = self.option("ca_file", str, "")
        if ca_file and (problem := ca_file_problem(ca_file)):
            raise ConfigError("ca_file", problem)
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
                        ca_file=ca_file or None,
                        spawn=lambda run, url=url: spawn_part(
                            self.context.supervisor, f"connection writer to {PushNode.label_of(url)}", run
                        ),
                    )
                )
            except ValueError as exc:
                raise ConfigError("nodes", str(exc)) from None
        # Without Redis (check-config, status) there are no backlogs: a failure fails the job.
        self.senders: dict[str, NodeSender] = {}
        if self.context.redis is not None:
            for node in self.nodes:
                feed = JobFeed(
                    self.context.redis,
                    backlog_feed_name(self.context.pipeline, node.label),
                    worker_id=self.context.worker_id or None,
                )
                # Instances of the pipeline share the backlog: one drains it at a time.
                lease = FeedLease(feed, feed.worker_id, DRAIN_LEASE_TTL)
                self.senders[node.label] = NodeSender(
                    node, feed, metrics=metrics, max_age=max_age, max_messages=max_messages, drain_lease=lease
                )
        self.stopping = False

    def start(self) -> None:
        for sender in self.senders.values():
            sender.start(self.context.supervisor)

    def partition_taken(self) -> None:
        for sender in self.senders.values():
            sender.look_at_backlog()

    def backlog_feeds(self) -> list[JobFeed]:
        return [sender.feed for sender in self.senders.values()]

    def backlog_holders(self) -> list[tuple[JobFeed, Callable[[], list[str]]]]:
        """Each backlog's feed and the records its sender holds (for the heartbeat)."""
        return [(sender.feed, sender.held_ids) for sender in self.senders.values()]

    def dead_letter_feeds(self) -> dict[str, JobFeed]:
        """Each node's dead-letter (its backlog feed's stalled set), by node."""
        return {label: sender.feed for label, sender in self.senders.items()}

    def status(self) -> dict:
        senders = self.senders.items()
        return {
            "backlog": {label: sender.depth() for label, sender in senders},
            "dead_letters": {label: sender.dead_letter_count() for label, sender in senders},
            "backlog_dropped": {label: sender.feed.dropped_counts() for label, sender in senders},
            "backlog_limit": next(iter(self.senders.values())).max_messages if self.senders else None,
        }

    def process(self, message: Message) -> Message:
        (error,) = self.process_batch([message])
        if error is not None:
            raise error
        return message

    def process_batch(self, messages: list[Message]) -> list[Exception | None]:
        """Publish a batch; returns, per message, None or the error that fails it."""
        errors: list[Exception | None] = [None] * len(messages)
        sendable = []
        for index, message in enumerate(messages):
            if message.body is None:
                errors[index] = Reject("http: the message has no body (put a format stage before http)")
                continue
            problem = PushNode.unsendable(message.channel, message.event_id)
            if problem:
                errors[index] = Reject(f"http: {problem}")
                continue
            if len(message.body) > self.max_message_size:
                errors[index] = Reject(
                    f"http: the message is {len(message.body)} bytes, over the push nodes' limit of"
                    f" {self.max_message_size} ([push] max_message_size, their client_max_body_size)"
                )
                continue
            sendable.append(index)
        if not self.senders:
            self._publish_directly(messages, sendable, errors)
            return errors
        # Handing every message to every sender never yields: batches keep their order.
        results = {
            index: [
                (
                    label,
                    sender.submit(messages[index].channel, messages[index].event_id, messages[index].body),
                )
                for label, sender in self.senders.items()
            ]
            for index in sendable
        }
        with idle():  # the senders are watched themselves
            self._wait_for(results)
        for index, pairs in results.items():
            errors[index] = self._outcome(messages[index], pairs)
        return errors

    @staticmethod
    def _wait_for(results: dict[int, list]) -> None:
        """Wait until every message's result is set. A sender settles a batch's messages in
        the order they were handed to it, unless it holds some in the backlog, so the last
        one per sender is waited for first (one wake-up per sender, not one per message),
        then whatever is still open."""
        last = {label: result for pairs in results.values() for label, result in pairs}
        gevent.wait([result for result in last.values() if not result.ready()])
        waiting = [result for pairs in results.values() for _, result in pairs if not result.ready()]
        if waiting:
            gevent.wait(waiting)

    def _outcome(self, message: Message, pairs: list) -> Exception | None:
        refusals = []
        for _label, result in pairs:
            if not result.successful():
                return result.exception  # the glue stopped before it was delivered or held
            sent, refusal = result.value
            if sent is Sent.REFUSED:
                refusals.append(refusal)
        if not refusals:
            return None
        if len(refusals) == len(pairs):
            # No node has it: the job is stalled with their answers, not dead-lettered N times.
            if len(refusals) == 1:
                return refusals[0]
            answers = "; ".join(str(exc) for exc in refusals)
            return PublishRefused(
                refusals[0].node, refusals[0].status, f"every push node refused the message: {answers}"
            )
        for refusal in refusals:
            sender = self.senders[refusal.node]
            failure = self._retry_redis(
                sender, sender.dead_letter, message.channel, message.event_id, message.body, refusal
            )
            if failure is not None:
                return TransientFailure(f"http: cannot dead-letter the message for {refusal.node}: {failure}")
        return None

    def _publish_directly(self, messages: list[Message], indexes: list[int], errors: list) -> None:
        """No backlogs: every POST queued, then the answers; a failure fails the job."""
        sent = [
            (
                index,
                node,
                node.start_publish(messages[index].channel, messages[index].event_id, messages[index].body),
            )
            for index in indexes
            for node in self.nodes
        ]
        deadline = time.monotonic() + self.timeout
        for index, node, pending in sent:
            try:
                node.finish_publish(pending, max(0.0, deadline - time.monotonic()))
            except (PublishFailed, PublishRefused) as exc:
                errors[index] = errors[index] or exc

    def _retry_redis(self, sender: NodeSender, write, *args) -> Exception | None:
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
                log.warning("cannot write to the dead-letter (%s); retrying", exc, extra=sender.fields)
                pause(backoff.failed())

    def close(self) -> None:
        self.stopping = True
        for sender in self.senders.values():
            sender.stop()
        for node in self.nodes:
            node.close()
