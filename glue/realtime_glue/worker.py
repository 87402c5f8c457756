"""The pipeline worker: claims jobs in batches, runs them through the pipeline, finishes them.

Up to `concurrency` jobs are claimed and not yet settled at once; the worker
claims only as many as it has free slots (backpressure). Each claimed batch
runs in one greenlet; what became of each job (finished, stalled, back on
the queue) is written to Redis by the Finisher actor, in batches, retried
until Redis takes it. A job the pipeline rejects is stalled with the reason;
one that fails is returned to the queue with its failure count raised, and
stalled once it has failed `max_failures` times. On stop, the worker claims
no more, lets in-flight jobs finish within a grace period, and gives the
rest back to the queue untried.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

import gevent
from gevent.lock import BoundedSemaphore
from gevent.pool import Pool

from .actor import Actor
from .backoff import Backoff
from .errors import Reject, TransientFailure
from .jobqueue import ClaimedJob, JobFeed
from .logs import fields
from .message import Message
from .pipeline import Pipeline
from .supervisor import Supervisor, idle, pause, progress, spawn_part, tracked

log = logging.getLogger(__name__)

FINISH_BATCH = 512


class Settle(enum.Enum):
    """What is written to Redis for a job whose claim this worker holds."""

    FINISH = "finish"  # done: forget it
    STALL = "stall"  # never processable as it is: the dead-letter, with the reason
    RETRY = "retry"  # failed for now: back to the queue, failure counted
    RELEASE = "release"  # never tried (shutdown): back to the queue, no failure


@dataclass(frozen=True)
class Outcome:
    job_id: str
    settle: Settle
    reason: str = ""


class Finisher(Actor):
    """Writes what became of each job, in batches: whatever piled up while the last write was
    in flight. A write that fails is retried with backoff until Redis takes it; the claim's
    lease is renewed meanwhile, so nothing is processed twice because Redis was away."""

    def __init__(self, feed: JobFeed, metrics=None, notify: bool = True, on_settled=None):
        super().__init__(name="finisher")
        self.feed = feed
        self.on_settled = on_settled
        self.metrics = metrics
        # Thoonk listeners learn of each finish on job.finish:<feed> ("<id>\0published").
        self.notify = notify
        self.pending = 0

    def send(self, outcome: Outcome) -> None:
        self.pending += 1
        super().send(outcome)

    def receive(self, outcome: Outcome) -> None:
        batch = [outcome, *self.drain(FINISH_BATCH - 1)]
        # Consecutive outcomes of one kind are written together, in order.
        start = 0
        for end in range(1, len(batch) + 1):
            if end == len(batch) or batch[end].settle is not batch[start].settle:
                self._write(batch[start:end])
                start = end

    def _write(self, outcomes: list[Outcome]) -> None:
        ids = [o.job_id for o in outcomes]
        settle = outcomes[0].settle
        backoff = Backoff()
        while True:
            progress()
            try:
                held = self._write_once(settle, outcomes, ids)
                break
            except Exception as exc:  # Redis away: keep the outcomes, retry with backoff
                delay = backoff.failed()
                log.warning("cannot %s %d jobs (%s); retrying in %.2fs", settle.value, len(ids), exc, delay)
                pause(delay)
        if held < len(ids):
            log.warning(
                "%d of %d jobs were not %s: their claims had expired and were reclaimed",
                len(ids) - held,
                len(ids),
                "finished" if settle is Settle.FINISH else f"{settle.value}ed",
            )
        self.pending -= len(ids)
        if self.on_settled is not None:
            self.on_settled(ids)
        if settle is Settle.FINISH and self.metrics is not None:
            self.metrics.processed.inc(held)

    def _write_once(self, settle: Settle, outcomes: list[Outcome], ids: list[str]) -> int:
        if settle is Settle.FINISH:
            return self.feed.finish(ids, results=["published"] * len(ids), notify=self.notify)
        if settle is Settle.RETRY:
            return self.feed.cancel(ids)
        if settle is Settle.RELEASE:
            return self.feed.release(ids)
        return sum(self.feed.stall(o.job_id, o.reason) for o in outcomes)

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
        supervisor: Supervisor | None = None,
    ):
        self.feed = feed
        self.supervisor = supervisor
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.claim_batch = claim_batch
        self.max_failures = max_failures
        self.mirror = mirror
        self.metrics = metrics
        # A slot is held from claim until what became of the job is written to
        # Redis, so at most `concurrency` jobs are ever claimed by this worker
        # and not yet settled: that bounds the duplicates a crash can cause.
        self.slots = BoundedSemaphore(concurrency)
        self.pool = Pool()
        self.finisher = Finisher(feed, metrics, notify=finish_notices, on_settled=self._settled)
        # Every claim this worker holds (its lease is renewed by the heartbeat).
        self.held: set[str] = set()
        # The jobs being run through the pipeline now, by the batch greenlet running them.
        self.in_flight: dict[str, gevent.Greenlet] = {}
        self.stopping = False
        self._loop: gevent.Greenlet | None = None

    def start(self) -> None:
        self.finisher.start(self.supervisor)
        self._loop = spawn_part(
            self.supervisor, "claim loop", self.claim_loop, told_to_stop=lambda: self.stopping
        )

    def held_ids(self) -> list[str]:
        return list(self.held)

    def claim_loop(self) -> None:
        backoff = Backoff()
        while not self.stopping:
            progress()
            # All slots taken: the batches holding them are watched themselves.
            with idle():
                if not self.slots.acquire(timeout=1.0):
                    continue
            free = 1
            while free < self.claim_batch and self.slots.acquire(blocking=False):
                free += 1
            try:
                jobs = self.feed.claim(free, mirror=self.mirror)
            except Exception as exc:
                self._free_slots(free)
                delay = backoff.failed()
                log.warning("cannot claim from feed %s (%s); retrying in %.2fs", self.feed.name, exc, delay)
                pause(delay)
                continue
            backoff.succeeded()
            self._free_slots(free - len(jobs))
            self.held.update(job.id for job in jobs)
            if not jobs:
                self._wait_for_jobs(backoff)
                continue
            if self.stopping:  # claimed as we were told to stop: give them back
                for job in jobs:
                    self.finisher.send(Outcome(job.id, Settle.RELEASE))
                continue
            # One greenlet per claimed batch: the stages run the batch's jobs
            # in claim order, and the publisher queues all their POSTs at once.
            batch = self.pool.spawn(self.process_batch, jobs)
            for job in jobs:
                self.in_flight[job.id] = batch
            if self.metrics is not None:
                self.metrics.in_flight.set(len(self.held))
            if len(jobs) < free:
                # The feed ran dry: block until the next job instead of asking
                # again (saves a round trip per job at low rates).
                self._wait_for_jobs(backoff)

    def _free_slots(self, count: int) -> None:
        for _ in range(count):
            self.slots.release()

    def _settled(self, job_ids: list[str]) -> None:
        self.held.difference_update(job_ids)
        self._free_slots(len(job_ids))
        if self.metrics is not None:
            self.metrics.in_flight.set(len(self.held))

    def _wait_for_jobs(self, backoff: Backoff) -> None:
        try:
            self.feed.wait_for_jobs(timeout=1.0)
        except Exception as exc:
            delay = backoff.failed()
            log.warning("cannot wait on feed %s (%s); retrying in %.2fs", self.feed.name, exc, delay)
            pause(delay)

    def process_batch(self, jobs: list[ClaimedJob]) -> None:
        messages = [Message(job_id=job.id, raw=job.item, failures=job.failures) for job in jobs]
        with tracked(self.supervisor, f"a batch of {len(jobs)} jobs from {jobs[0].id}"):
            try:
                errors = self.pipeline.run_batch(messages)  # killed by stop(): stop() gives them back
            except Exception as exc:  # a bug: the jobs must not stay claimed and renewed forever
                log.exception("a batch of %d jobs failed as a whole", len(jobs))
                errors = [exc] * len(jobs)
        for job, error in zip(jobs, errors, strict=True):
            self.in_flight.pop(job.id, None)
            self.finisher.send(self._outcome(job, error))

    def _outcome(self, job: ClaimedJob, error: Exception | None) -> Outcome:
        if error is None:
            return Outcome(job.id, Settle.FINISH)
        if isinstance(error, Reject):
            return self._stall(job, str(error))
        reason = str(error) if isinstance(error, TransientFailure) else f"{type(error).__name__}: {error}"
        failures = job.failures + 1
        if failures >= self.max_failures:
            return self._stall(job, f"failed {failures} times, last: {reason}")
        log.warning(
            "job %s failed (%d of %d): %s",
            job.id,
            failures,
            self.max_failures,
            reason,
            extra=fields(job=job.id),
        )
        if self.metrics is not None:
            self.metrics.failed.inc()
        return Outcome(job.id, Settle.RETRY, reason)

    def _stall(self, job: ClaimedJob, reason: str) -> Outcome:
        log.warning("job %s stalled: %s", job.id, reason, extra=fields(job=job.id))
        if self.metrics is not None:
            self.metrics.stalled.inc()
        return Outcome(job.id, Settle.STALL, reason)

    def stop(self, grace: float = 10.0) -> None:
        """Claim nothing more; finish in-flight jobs within `grace`; give the rest back."""
        self.stopping = True
        if self._loop is not None:
            self._loop.join(timeout=2.0)
            self._loop.kill(block=True, timeout=1)
        self.pool.join(timeout=grace)
        self.pool.kill(block=True, timeout=2)
        left = list(self.in_flight)  # the batches killed before they were done
        self.in_flight.clear()
        if left:
            log.warning("giving %d unfinished jobs back to the queue", len(left))
            for job_id in left:
                self.finisher.send(Outcome(job_id, Settle.RELEASE))
        self.finisher.flush()
        self.finisher.stop()
