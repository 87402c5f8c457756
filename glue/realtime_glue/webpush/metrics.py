"""The webpush stage's Prometheus metrics, on the pipeline's registry (none without one)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OUTCOMES = ("sent", "gone", "held", "refused", "expired", "rate_limited")


class WebPushMetrics:
    def __init__(self, glue_metrics, pipeline: str):
        self._deliveries = self._backlog = None
        if glue_metrics is None:
            return
        self._deliveries = Counter(
            "glue_webpush_deliveries_total",
            "Push messages by outcome: sent; gone (subscription deleted); held (backlog);"
            " refused (dead-letter); expired (TTL over in the backlog); rate_limited (dropped)",
            ["pipeline", "outcome"],
            registry=glue_metrics.registry,
        ).labels
        self._backlog = Gauge(
            "glue_webpush_backlog_depth",
            "Push messages waiting for a push service origin",
            ["pipeline", "origin"],
            registry=glue_metrics.registry,
        ).labels
        self.pipeline = pipeline

    def count(self, outcome: str, n: int = 1) -> None:
        if self._deliveries is not None and n:
            self._deliveries(pipeline=self.pipeline, outcome=outcome).inc(n)

    def backlog_depth(self, origin: str, depth: int) -> None:
        if self._backlog is not None:
            self._backlog(pipeline=self.pipeline, origin=origin).set(depth)
