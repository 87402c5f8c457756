"""The pipeline worker: claims jobs in batches, runs them through the pipeline, finishes them.

Up to `concurrency` jobs are claimed and not yet finished at once; the
worker claims only as many as it has free slots (backpressure). Each claimed
batch runs in one greenlet; finishes are batched by the Finisher actor. A
job the pipeline rejects is stalled with the reason; one that fails is
returned to the queue with its failure count raised, and stalled once it has
failed `max_failures` times. On stop, the worker claims no more, lets
in-flight jobs finish within a grace period, and gives the rest back to the
queue untried.
"""

from __future__ import annotations

import logging
import time

import gevent
from gevent.lock import BoundedSemaphore
from gevent.pool import Pool

from .actor import Actor
from .backoff import backoff_delay
from .errors import Reject, TransientFailure
from .jobqueue import ClaimedJob, JobFeed
from .message import Message
from .pipeline import Pipeline

log = logging.getLogger(__name__)

FINISH_BATCH = 512


class Finisher(Actor):
    """Finishes jobs in batches: whatever piled up while the last batch was in flight."""

    def __init__(self, feed: JobFeed, metrics=None, notify: bool = True, on_finished=None):
        super().__init__(name="finisher")
        self.feed = feed
        self.on_finished = on_finished
        self.metrics = metrics
        # Thoonk listeners learn of each finish on job.finish:<feed> ("<id>\0published").
        self.notify = notify
        self.pending = 0

    def send(self, job_id: str) -> None:
        self.pending += 1
        super().send(job_id)

    def receive(self, job_id: str) -> None:
        batch = [job_id, *self.drain(FINISH_BATCH - 1)]
        attempt = 0
        while True:
            try:
                self.feed.finish(batch, results=["published"] * len(batch), notify=self.notify)
                break
            except Exception as exc:  # Redis away: keep the batch, retry with backoff
                log.warning("finish of %d jobs failed (%s); retrying", len(batch), exc)
                gevent.sleep(backoff_delay(attempt))
                attempt += 1
        self.pending -= len(batch)
        if self.on_finished is not None:
            self.on_finished(len(batch))
        if self.metrics is not None:
            self.metrics.processed.inc(len(batch))

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            gevent.sleep(0.005)
        return self.pending == 0


class PipelineWorker:
    def __init__(
        self,
        feed: JobFeed,
        pipeline: Pipeline,
        concurrency: int = 32,
        claim_batch: int = 64,
        max_failures: int = 5,
        mirror: JobFeed | None = None,
        metrics=None,
        finish_notices: bool = True,
    ):
        self.feed = feed
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.claim_batch = claim_batch
        self.max_failures = max_failures
        self.mirror = mirror
        self.metrics = metrics
        # A slot is held from claim until the job's finish (or stall, or
        # cancel) is written to Redis, so at most `concurrency` jobs are ever
        # claimed by this worker and not yet finished: that bounds the
        # duplicates a crash can cause.
        self.slots = BoundedSemaphore(concurrency)
        self.pool = Pool()
        self.finisher = Finisher(feed, metrics, notify=finish_notices, on_finished=self._free_slots)
        self.in_flight: dict[str, gevent.Greenlet] = {}
        self.stopping = False
        self._loop: gevent.Greenlet | None = None

    def start(self) -> None:
        self.finisher.start()
        self._loop = gevent.spawn(self.claim_loop)

    def claim_loop(self) -> None:
        attempt = 0
        while not self.stopping:
            if not self.slots.acquire(timeout=1.0):
                continue
            free = 1
            while free < self.claim_batch and self.slots.acquire(blocking=False):
                free += 1
            try:
                jobs = self.feed.claim(free, mirror=self.mirror)
            except Exception as exc:
                self._free_slots(free)
                delay = backoff_delay(attempt)
                log.warning("cannot claim from feed %s (%s); retrying in %.2fs", self.feed.name, exc, delay)
                gevent.sleep(delay)
                attempt += 1
                continue
            self._free_slots(free - len(jobs))
            if not jobs:
                self._wait_for_jobs()
                continue
            attempt = 0
            if self.stopping:  # claimed as we were told to stop: give them back
                self._give_back([job.id for job in jobs])
                continue
            # One greenlet per claimed batch: the stages run the batch's jobs
            # in claim order, and the publisher queues all their POSTs at once.
            batch = self.pool.spawn(self.process_batch, jobs)
            for job in jobs:
                self.in_flight[job.id] = batch
            if self.metrics is not None:
                self.metrics.in_flight.set(len(self.in_flight))
            if len(jobs) < free:
                # The feed ran dry: block until the next job instead of asking
                # again (saves a round trip per job at low rates).
                self._wait_for_jobs()

    def _free_slots(self, count: int) -> None:
        for _ in range(count):
            self.slots.release()

    def _wait_for_jobs(self) -> None:
        try:
            self.feed.wait_for_jobs(timeout=1.0)
        except Exception as exc:
            log.warning("cannot wait on feed %s (%s)", self.feed.name, exc)
            gevent.sleep(1.0)

    def process_batch(self, jobs: list[ClaimedJob]) -> None:
        messages = [Message(job_id=job.id, raw=job.item, failures=job.failures) for job in jobs]
        try:
            errors = self.pipeline.run_batch(messages)
        except gevent.GreenletExit:
            for job in jobs:  # stop() gives them back and frees nothing
                self.in_flight.pop(job.id, None)
            raise
        for job, error in zip(jobs, errors, strict=True):
            self.in_flight.pop(job.id, None)
            if error is None:
                self.finisher.send(job.id)
                continue
            if isinstance(error, Reject):
                self._stall(job, str(error))
            else:
                reason = (
                    str(error) if isinstance(error, TransientFailure) else f"{type(error).__name__}: {error}"
                )
                self._fail(job, reason)
            self._free_slots(1)

    def _stall(self, job: ClaimedJob, reason: str) -> None:
        log.warning("job %s stalled: %s", job.id, reason)
        self._retrying(lambda: self.feed.stall(job.id, reason))
        if self.metrics is not None:
            self.metrics.stalled.inc()

    def _fail(self, job: ClaimedJob, reason: str) -> None:
        failures = job.failures + 1
        if failures >= self.max_failures:
            self._stall(job, f"failed {failures} times, last: {reason}")
            return
        log.warning("job %s failed (%d of %d): %s", job.id, failures, self.max_failures, reason)
        self._retrying(lambda: self.feed.cancel([job.id]))
        if self.metrics is not None:
            self.metrics.failed.inc()

    def _give_back(self, job_ids) -> None:
        self._retrying(lambda: self.feed.release(job_ids), attempts=20)

    def _retrying(self, operation, attempts: int = 100):
        for attempt in range(attempts):
            try:
                return operation()
            except Exception as exc:
                log.warning("redis operation failed (%s); retrying", exc)
                gevent.sleep(backoff_delay(attempt))
        # Still claimed in Redis: the claim expires and the job is retried.
        return None

    def stop(self, grace: float = 10.0) -> None:
        """Claim nothing more; finish in-flight jobs within `grace`; give the rest back."""
        self.stopping = True
        if self._loop is not None:
            self._loop.join(timeout=2.0)
            self._loop.kill(block=True, timeout=1)
        self.pool.join(timeout=grace)
        left = list(self.in_flight)
        if left:
            log.warning("giving %d unfinished jobs back to the queue", len(left))
            self.pool.kill(block=True, timeout=2)
            self._give_back(left)
        self.finisher.flush()
        self.finisher.stop()
