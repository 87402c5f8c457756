"""EventSource subscribers in threads that record, per channel, what a push node delivered
and in which order, reconnecting with Last-Event-ID as a browser does.

    collectors = ChannelCollectors(node, ["a", "b"])
    ...
    collectors.received["a"]   # the messages' job ids, in delivery order, duplicates kept
    collectors.close()

`ChannelNumbers` is the simpler kind: one stream per channel, no reconnect, the
messages' `data.n` in delivery order (a node that goes away ends its streams).

Plain module, no pytest dependency.
"""

from __future__ import annotations

import json
import threading
import time


class ChannelCollector:
    def __init__(self, node, channel: str):
        self.node = node
        self.channel = channel
        self.received: list[dict] = []
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.last_event_id: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.node.events(self.channel, self.last_event_id, timeout=60) as events:
                    self.connected.set()
                    while not self.stop.is_set():
                        event = events.next_event()
                        self.received.append(json.loads(event.data))
                        self.last_event_id = event.id
            except Exception:
                self.connected.clear()
                time.sleep(0.1)


class ChannelCollectors:
    """One collector per channel on one node."""

    def __init__(self, node, channels: list[str]):
        self.node = node
        self.by_channel = {channel: ChannelCollector(node, channel) for channel in channels}
        for channel in channels:
            node.wait_for_subscribers(channel)

    def messages(self, channel: str) -> list[dict]:
        return list(self.by_channel[channel].received)

    def first_seen(self, channel: str, key=lambda message: message["id"]) -> list:
        """The channel's messages in delivery order with repeats dropped, as a browser
        that remembers message ids shows them."""
        seen: set = set()
        out = []
        for message in self.messages(channel):
            if key(message) not in seen:
                seen.add(key(message))
                out.append(message)
        return out

    def unique_count(self) -> int:
        return sum(len({m["id"] for m in self.messages(c)}) for c in self.by_channel)

    def duplicates(self) -> int:
        return sum(len(self.messages(c)) for c in self.by_channel) - self.unique_count()

    def close(self) -> None:
        for collector in self.by_channel.values():
            collector.stop.set()  # daemon threads: they end with their streams


class ChannelNumbers:
    """One EventSource subscriber per channel on a node, recording each channel's `n`s."""

    def __init__(self, node, channels: list[str]):
        self.received: dict[str, list[int]] = {channel: [] for channel in channels}
        self.streams = [node.events(channel, timeout=120) for channel in channels]
        for channel in channels:
            node.wait_for_subscribers(channel)
        for channel, stream in zip(channels, self.streams, strict=True):
            threading.Thread(target=self._read, args=(channel, stream), daemon=True).start()

    def _read(self, channel, stream) -> None:
        try:
            while True:
                self.received[channel].append(json.loads(stream.next_event().data)["data"]["n"])
        except Exception:
            return  # the node went away, or the test closed the stream

    def count(self) -> int:
        return sum(len(ns) for ns in self.received.values())

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
