"""http: publish the message to every push node at once.

The job is done when every node has the message or holds it in that node's
backlog: one failing node never holds up the others, and never loses a
message.
"""

from __future__ import annotations

import gevent

from ..errors import ConfigError
from ..jobqueue import JobFeed
from ..message import Message, Reject
from ..stages import Stage
from .backlog import NodeBacklog, backlog_feed_name
from .push_node import PublishFailed, PushNode


class HttpPublish(Stage):
    name = "http"

    def configure(self) -> None:
        urls = self.string_list("nodes", [])
        if not urls:
            raise ConfigError("nodes", "at least one push node URL is needed")
        timeout = self.option("timeout", float, 5.0, lambda v: v > 0, "must be positive")
        pool_size = self.option("pool_size", int, 64, lambda v: v > 0, "must be positive")
        metrics = self.context.metrics
        self.nodes = []
        for url in urls:
            try:
                self.nodes.append(PushNode(url, timeout=timeout, pool_size=pool_size, metrics=metrics))
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

    def process(self, message: Message) -> Message:
        if message.body is None:
            raise Reject("http: the message has no body (put a format stage before http)")
        if len(self.nodes) == 1:
            self.publish_to_node(self.nodes[0], message)
        else:
            greenlets = [gevent.spawn(self.publish_to_node, node, message) for node in self.nodes]
            gevent.joinall(greenlets, raise_error=True)
        return message

    def publish_to_node(self, node: PushNode, message: Message) -> None:
        backlog = self.backlogs.get(node.label)
        if backlog is not None and backlog.down:
            # Queue behind the held messages so the node gets them in order.
            backlog.hold(message.channel, message.event_id, message.body, "node is down")
            return
        try:
            node.publish(message.channel, message.event_id, message.body)
        except PublishFailed as exc:
            if backlog is None:
                raise
            backlog.hold(message.channel, message.event_id, message.body, str(exc))

    def close(self) -> None:
        for backlog in self.backlogs.values():
            backlog.stop()
        for node in self.nodes:
            node.close()
