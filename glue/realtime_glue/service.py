"""`realtime-glue run PIPELINE`: wires Redis, the pipeline, the worker and systemd."""

from __future__ import annotations

import logging
import time

import redis as redis_lib

from .backoff import backoff_delay
from .balancer import PartitionBalancer
from .config import GlueConfig
from .errors import ConfigError
from .heartbeat import Heartbeat
from .jobqueue import JobFeed, new_worker_id
from .metrics import GlueMetrics
from .notify import SystemdNotifier
from .partition_workers import PartitionWorkers
from .partitions import record_partitioning
from .pipeline import build_pipeline
from .primary_watch import PrimaryWatch
from .process import SupervisedProcess
from .reclaimer import Reclaimer
from .redis_connection import check_sentinels, connect_redis, describe_target
from .stage import StageContext
from .worker import PipelineWorker

log = logging.getLogger(__name__)

# Seconds a starting glue retries sentinels none of which answers, before it takes
# the list for a wrong one (exit 78); within systemd's TimeoutStartSec (60 s).
SENTINEL_STARTUP_WAIT = 30.0


class GlueService(SupervisedProcess):
    def __init__(self, config: GlueConfig, pipeline_name: str, notifier: SystemdNotifier | None = None):
        # Every long-lived part runs under self.supervisor: one that dies stops the glue
        # (exit 70), one stuck in a step stops the watchdog pings.
        super().__init__(config.progress_timeout, notifier)
        self.config = config
        self.pipeline_config = config.pipeline(pipeline_name)
        self.redis = connect_redis(config)
        self.metrics = GlueMetrics(pipeline_name)
        self.worker_id = new_worker_id()
        context = StageContext(
            pipeline=pipeline_name,
            redis=self.redis,
            worker_id=self.worker_id,
            metrics=self.metrics,
            supervisor=self.supervisor,
        )
        pc = self.pipeline_config
        try:
            self.pipeline = build_pipeline(pc.name, pc.stages, pc.stage_options, context, pc.preset)
        except ConfigError as exc:
            raise exc.under(f"pipelines.{pc.name}") from None
        self.feeds = [JobFeed(self.redis, name, worker_id=self.worker_id) for name in pc.feeds]
        self.feed = self.feeds[0]
        self.mirror = JobFeed(self.redis, pc.mirror_feed) if pc.mirror_feed else None
        interval = max(0.05, config.visibility_timeout / 3)
        if pc.partitions == 1:
            self.worker = self._worker(self.feed)
            self.balancer = None
            holders = lambda: [(self.feed, self.worker.held_ids)]  # noqa: E731
        else:
            # Each partition by one instance at a time: a worker per partition this one holds.
            self.worker = None
            self.partitions = PartitionWorkers(self._worker, config.shutdown_grace)
            self.metrics.in_flight.set_function(self.partitions.in_flight)
            self.balancer = PartitionBalancer(
                self.redis,
                pc.feed,
                pc.feeds,
                self.worker_id,
                ttl=config.visibility_timeout,
                open_partition=self._open_partition,
                close_partition=self.partitions.close,
            )
            holders = self.partitions.holders
        self.heartbeat = Heartbeat(lambda: [*holders(), *self._backlog_holders()], interval=interval)
        # Every partition, held here or not: a dead instance's claims are reclaimed by the living.
        self.reclaimer = Reclaimer(
            lambda: [*self.feeds, *(feed for feed, _ in self._backlog_holders())],
            config.visibility_timeout,
            config.max_failures,
            self.metrics,
        )
        # Sentinel: follows failovers (drops the connections to an old primary).
        self.primary_watch = PrimaryWatch(self.redis, self.metrics) if config.redis_sentinel else None

    def _backlog_holders(self) -> list:
        """Every stage's backlogs (push nodes', Web Push origins'; these come and go) and the
        records each holds now: heartbeated and reclaimed like the job feed."""
        return [
            holder for stage in self.pipeline.stages for holder in getattr(stage, "backlog_holders", list)()
        ]

    def _open_partition(self, feed: JobFeed) -> None:
        # What the partition's last holder left in a node's backlog goes before its next jobs.
        self.pipeline.partition_taken()
        self.partitions.open(feed)

    def _worker(self, feed: JobFeed) -> PipelineWorker:
        return PipelineWorker(
            feed,
            self.pipeline,
            concurrency=self.pipeline_config.concurrency,
            claim_batch=self.config.claim_batch,
            claim_linger=self.config.claim_linger,
            max_failures=self.config.max_failures,
            mirror=self.mirror,
            metrics=self.metrics,
            finish_notices=self.config.finish_notices,
            supervisor=self.supervisor,
        )

    def wait_for_redis(self) -> None:
        if self.config.redis_sentinel is not None:
            self.ask_sentinels_at_start()
        where = describe_target(self.config)
        attempt = 0
        while not self._stop_requested.is_set():
            try:
                self.redis.ping()
                return
            except redis_lib.RedisError as exc:
                delay = backoff_delay(attempt, base=0.1)
                self.notifier.status(f"waiting for Redis at {where}: {exc}")
                log.warning("cannot reach Redis at %s (%s); retrying in %.1fs", where, exc, delay)
                self._stop_requested.wait(delay)
                attempt += 1

    def ask_sentinels_at_start(self) -> None:
        """A Sentinel service the sentinels do not know, or a password they refuse, is a
        config error at once (exit 78). A list none of which answers is one after
        SENTINEL_STARTUP_WAIT seconds of retries (a boot race passes; a wrong list does
        not). Once running, the glue keeps retrying whatever happens to the sentinels."""
        deadline = time.monotonic() + SENTINEL_STARTUP_WAIT
        attempt = 0
        while not self._stop_requested.is_set():
            try:
                found = check_sentinels(self.config)
            except (ConfigError, redis_lib.RedisError) as exc:
                unanswered = isinstance(exc, ConfigError) and exc.key == "redis.sentinels"
                if isinstance(exc, ConfigError) and (not unanswered or time.monotonic() > deadline):
                    raise
                delay = backoff_delay(attempt, base=0.2, cap=2.0)
                self.notifier.status(f"waiting for the sentinels: {exc}")
                log.warning("%s; asking again in %.1fs", exc, delay)
                self._stop_requested.wait(delay)
                attempt += 1
                continue
            log.info(
                "Redis: service %s, primary %s:%d (sentinel %s, epoch %d)",
                self.config.redis_sentinel.service,
                *found.primary,
                found.sentinel,
                found.epoch,
            )
            return

    def run(self) -> int:
        """Run until SIGTERM (0) or until a part of the glue dies (70); returns the exit status."""
        self.begin()
        self.wait_for_redis()
        if self._stop_requested.is_set():
            return self.exit_code
        pc = self.pipeline_config
        try:
            record_partitioning(self.redis, pc.feed, pc.partitions)
        except ValueError as exc:
            raise ConfigError(f"pipelines.{pc.name}.partitions", str(exc)) from None
        if self.pipeline_config.metrics_listen:
            self.metrics.serve(self.pipeline_config.metrics_listen)
        if self.primary_watch is not None:
            self.primary_watch.start(self.supervisor)
        try:
            self.heartbeat.beat_once()
        except redis_lib.RedisError as exc:
            log.warning("first heartbeat failed (%s); the heartbeat retries", exc)
        self.heartbeat.start(self.supervisor)
        self.reclaimer.start(self.supervisor)
        self.pipeline.start()
        if self.balancer is not None:
            self.balancer.start(self.supervisor)
        else:
            self.worker.start()
        status = f"pipeline {pc.name} ({' -> '.join(pc.stages)}) on feed {pc.feed}"
        if pc.partitions > 1:
            status += f" in {pc.partitions} partitions"
        log.info("ready: %s, worker %s", status, self.worker_id)
        self.notifier.ready(status)
        self.wait_for_stop()
        self.notifier.stopping(f"finishing in-flight jobs (grace {self.config.shutdown_grace:g}s)")
        if self.balancer is not None:
            # Every partition's worker settles what it holds, then its lease is released.
            self.balancer.stop(self.config.shutdown_grace + 10)
        else:
            self.worker.stop(self.config.shutdown_grace)
        self.pipeline.close()
        self.reclaimer.stop()
        self.heartbeat.stop()
        if self.primary_watch is not None:
            self.primary_watch.stop()
        try:
            for feed in self.feeds:
                feed.leave()
        except redis_lib.RedisError:
            pass
        return self.end()
