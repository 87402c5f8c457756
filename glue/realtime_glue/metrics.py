"""Prometheus metrics of one glue process, on a local port (the readers unit's: readers/metrics.py)."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from . import __version__


class ProcessMetrics:
    """One process's own registry (a glue pipeline, the readers unit): what every Prometheus
    client exports (memory, CPU, open files, GC), a build-info gauge, and its endpoint."""

    def __init__(self, build_info: str, labels: dict[str, str]):
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
            self.registry.register(collector)
        Gauge(
            build_info, "The glue's version (always 1)", [*labels, "version"], registry=self.registry
        ).labels(**labels, version=__version__).set(1)

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)


class GlueMetrics(ProcessMetrics):
    def __init__(self, pipeline: str):
        labels = {"pipeline": pipeline}
        super().__init__("glue_build_info", labels)

        def counter(name, doc):
            return Counter(name, doc, ["pipeline"], registry=self.registry).labels(**labels)

        self.processed = counter("glue_jobs_processed_total", "Jobs run through the pipeline and finished")
        self.failed = counter("glue_jobs_failed_total", "Jobs that failed and went back to the queue")
        self.stalled = counter("glue_jobs_stalled_total", "Jobs stalled with a reason (dead-letter)")
        self.reclaimed = counter("glue_jobs_reclaimed_total", "Expired claims returned to the queue")
        # Jobs per claim (claimed / claims) is what [queue] claim_linger buys.
        self.claims = counter("glue_claims_total", "Claims from the feed that carried jobs")
        self.claimed = counter("glue_jobs_claimed_total", "Jobs claimed from the feed")
        self.redis_failovers = counter(
            "glue_redis_failovers_total", "Redis failovers (Sentinel) the glue followed to a new primary"
        )
        self.backlog_depth = Gauge(
            "glue_backlog_depth", "Messages held for a failing push node", ["node"], registry=self.registry
        )
        self.publish_seconds = Histogram(
            "glue_publish_seconds",
            "Time to POST one message to a push node",
            ["node"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "glue_node_dead_letters_total",
            "Messages a push node refused for good (4xx), kept in its dead-letter",
            ["node"],
            registry=self.registry,
        )
        self.backlog_dropped = Counter(
            "glue_backlog_dropped_total",
            "Held messages dropped from a node's backlog: older than the node's message TTL "
            "(reason=expired) or beyond the backlog limit (reason=full)",
            ["node", "reason"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "glue_jobs_in_flight", "Jobs claimed and not yet finished", registry=self.registry
        )
