"""Prometheus gauges of the readers unit (`[readers] metrics_listen`).

Every channel may have readers, and one series per channel would grow without
bound: the totals cover every channel, and only the `top_channels` busiest have
a series of their own (a channel that leaves the top loses its series). Only the
unit that publishes (holds the lease) asks the nodes, so only its gauges are
current: `glue_readers_publishing` says which one it is.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from ..metrics import ProcessMetrics


class ReadersMetrics(ProcessMetrics):
    def __init__(self) -> None:
        super().__init__("glue_readers_build_info", {})
        self.total = Gauge(
            "glue_readers_total", "Readers now, over every channel and push node", registry=self.registry
        )
        self.channels = Gauge(
            "glue_readers_channels", "Channels with at least one reader", registry=self.registry
        )
        self.per_channel = Gauge(
            "glue_readers",
            "Readers now of one of the busiest channels, over every push node",
            ["channel"],
            registry=self.registry,
        )
        self.per_node = Gauge(
            "glue_readers_node", "Readers now on one push node", ["node"], registry=self.registry
        )
        self.node_up = Gauge(
            "glue_readers_node_up",
            "1 if the push node gave its statistics in the last round",
            ["node"],
            registry=self.registry,
        )
        self.publishing = Gauge(
            "glue_readers_publishing",
            "1 while this unit holds the lease: it asks the nodes and publishes the counts",
            registry=self.registry,
        )
        self.messages = Counter(
            "glue_readers_messages_total",
            "Messages published on the readers channel (kind=full: snapshot parts; changes)",
            ["kind"],
            registry=self.registry,
        )
        self.last_round = Gauge(
            "glue_readers_last_round_timestamp_seconds",
            "When the last round of statistics was taken",
            registry=self.registry,
        )
        self._shown: set[str] = set()

    def show_channels(self, busiest: dict[str, int]) -> None:
        """One series per channel of `busiest`; series of channels no longer in it are removed."""
        for channel in self._shown - busiest.keys():
            self.per_channel.remove(channel)
        for channel, count in busiest.items():
            self.per_channel.labels(channel=channel).set(count)
        self._shown = set(busiest)
