"""http: publish the message to every push node at once.

The job is done when every node has the message or holds it in that node's
backlog: one failing node never holds up the others, and never loses a
message.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import ConfigError, PublishFailed, Reject, TransientFailure
from ..jobqueue import JobFeed
from ..message import Message
from ..stage import Stage
from .backlog import NodeBacklog, backlog_feed_name
from .push_node import PushNode


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
        metrics = self.context.metrics
        self.nodes = []
        for url in urls:
            try:
                self.nodes.append(PushNode(url, timeout=timeout, connections=connections, metrics=metrics))
            except ValueError as exc:
                raise ConfigError("nodes", str(exc)) from None
        self.backlogs = {}
        if self.context.redis is not None:
            for node in self.nodes:
                feed = JobFeed(
                    self.context.redis,
                    backlog_feed_name(self.context.pipeline, node.label),
                    worker_id=self.context.worker_id or None,
                )
                self.backlogs[node.label] = NodeBacklog(node, feed, metrics=metrics)

    def start(self) -> None:
        for backlog in self.backlogs.values():
            backlog.start()

    def backlog_feeds(self) -> list[JobFeed]:
        return [b.feed for b in self.backlogs.values()]

    def backlog_holders(self) -> list[tuple[JobFeed, Callable[[], list[str]]]]:
        """Each backlog's feed and the records its drainer holds (for the heartbeat)."""
        return [(b.feed, b.held_ids) for b in self.backlogs.values()]

    def status(self) -> dict:
        return {"backlog": {label: backlog.depth() for label, backlog in self.backlogs.items()}}

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
        waiting = []
        held = []
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
                    held.append((index, node, "node is down"))
                else:
                    waiting.append(
                        (index, node, node.start_publish(message.channel, message.event_id, message.body))
                    )
        deadline = time.monotonic() + self.timeout
        for index, node, pending in waiting:
            try:
                node.finish_publish(pending, max(0.0, deadline - time.monotonic()))
            except PublishFailed as exc:
                if node.label in self.backlogs:
                    held.append((index, node, str(exc)))
                else:
                    errors[index] = exc
        for index, node, reason in sorted(held, key=lambda h: h[0]):
            message = messages[index]
            try:
                self.backlogs[node.label].hold(message.channel, message.event_id, message.body, reason)
            except Exception as exc:  # Redis away: the job is retried later
                errors[index] = TransientFailure(f"http: cannot hold the message for {node.label}: {exc}")
        return errors

    def close(self) -> None:
        for backlog in self.backlogs.values():
            backlog.stop()
        for node in self.nodes:
            node.close()
