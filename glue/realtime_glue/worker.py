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
import gevent.event
from gevent.pool import Group
from gevent.queue import Queue

from .actor import Actor
from .backoff import Backoff
from .claim_linger import LONGEST, ClaimLinger
from .errors import Reject, TransientFailure
from .jobqueue import ClaimedJob, JobFeed
from .logs import fields
from .message import Message
from .pipeline import Pipeline
from .supervisor import Supervisor, idle, pause, progress, spawn_part, tracked

log = logging.getLogger(__name__)

FINISH_BATCH = 512
# How long a claim waits for the next job when none is ready (below [redis] timeout, >= 2 s).
WAIT_FOR_JOBS = 1.0
# How long the first outcome of a batch waits for others to be written with it (seconds).
FINISH_LINGER = 0.005


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
    in flight, and at everyday rates (when jobs come one at a time) what comes within
    `linger` seconds of the first, unless the worker needs the slots now (`hurry`). While the
    claim loop waits a moment before its next claim, finishes ride with that claim instead
    (one round trip for both); a ride that fails comes back here. A write that fails is
    retried with backoff until Redis takes it; the claim's lease is renewed meanwhile, so
    nothing is processed twice because Redis was away."""

    def __init__(
        self, feed: JobFeed, metrics=None, notify: bool = True, on_settled=None, linger: float = FINISH_LINGER
    ):
        super().__init__(name="finisher")
        self.feed = feed
        self.on_settled = on_settled
        self.metrics = metrics
        # Thoonk listeners learn of each finish on job.finish:<feed> ("<id>\0published").
        self.notify = notify
        self.linger = linger
        self.pending = 0
        self._hurried = False
        self._wake = gevent.event.Event()
        # While the claim loop waits a moment before its next claim, finishes ride with that
        # claim (written ahead of it, in the same round trip): offer_ride() gives the list.
        self.ride: list[Outcome] | None = None
        # Jobs whose finish may have been written by a write whose reply was lost (a ride
        # cut off, a write that failed): written again they are found done, yet this worker
        # processed them, so they still count as processed.
        self._maybe_written: set[str] = set()

    def send(self, outcome: Outcome) -> None:
        self.pending += 1
        super().send(outcome)

    def hurry(self) -> None:
        """Write what waits without lingering (the worker is out of slots, or stopping)."""
        self._hurried = True
        self._wake.set()

    def offer_ride(self, ride: list[Outcome]) -> None:
        """A claim is about to be made: finishes from now on go into `ride`, written with it."""
        self.ride = ride
        self._wake.set()

    def withdraw_ride(self) -> None:
        self.ride = None

    def give_back(self, outcomes: list[Outcome]) -> None:
        """Outcomes handed to a ride that was not written (or not surely): write them here."""
        self._maybe_written.update(o.job_id for o in outcomes)
        for outcome in outcomes:
            super().send(outcome)

    def _onto_ride(self, batch: list[Outcome]) -> list[Outcome]:
        """Put the batch's finishes on the ride, if one is offered; what is left to write here."""
        if self.ride is None:
            return batch
        self.ride.extend(o for o in batch if o.settle is Settle.FINISH)
        return [o for o in batch if o.settle is not Settle.FINISH]

    def receive(self, outcome: Outcome) -> None:
        batch = self._onto_ride([outcome, *self.drain(FINISH_BATCH - 1)])
        if batch and len(batch) < FINISH_BATCH and self.linger > 0 and not self._hurried:
            # A job's message is delivered before it is finished, so this wait delays only
            # the write (and the job's slot), never a message.
            self._wake.clear()
            with idle():
                self._wake.wait(self.linger)
            batch = self._onto_ride(batch + self.drain(FINISH_BATCH - len(batch)))
        self._hurried = False
        if not batch:
            return
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
                self._maybe_written.update(ids)  # Redis may have run it and lost the reply
                delay = backoff.failed()
                log.warning("cannot %s %d jobs (%s); retrying in %.2fs", settle.value, len(ids), exc, delay)
                pause(delay)
        self.written(settle, ids, held)

    def written(self, settle: Settle, ids: list[str], held: int) -> None:
        """Outcomes of one kind were written (here, or riding with a claim); `held`: how many
        of them this write settled (the rest were settled already, or are not this worker's)."""
        done_before = 0
        if self._maybe_written:
            done_before = sum(1 for job_id in ids if job_id in self._maybe_written)
            self._maybe_written.difference_update(ids)
        if held < len(ids):
            log.warning(
                "%d of %d jobs were not %s by this write: an earlier write of theirs whose reply was"
                " lost (Redis went away) had done it, or their claims had expired and were reclaimed",
                len(ids) - held,
                len(ids),
                "finished" if settle is Settle.FINISH else f"{settle.value}ed",
            )
        self.pending -= len(ids)
        if self.on_settled is not None:
            self.on_settled(ids)
        if settle is Settle.FINISH and self.metrics is not None:
            # A job an earlier write finished (its reply lost) was processed here all the same.
            self.metrics.processed.inc(min(len(ids), held + done_before))

    def _write_once(self, settle: Settle, outcomes: list[Outcome], ids: list[str]) -> int:
        if settle is Settle.FINISH:
            return self.feed.finish(ids, results=["published"] * len(ids), notify=self.notify)
        if settle is Settle.RETRY:
            return self.feed.cancel(ids)
        if settle is Settle.RELEASE:
            return self.feed.release(ids)
        return sum(self.feed.stall(o.job_id, o.reason) for o in outcomes)

    def flush(self, timeout: float = 10.0) -> bool:
        self.hurry()
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
        claim_linger: float = LONGEST,
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
        # A count, not a semaphore: a claim takes up to `claim_batch` slots at once, and
        # acquiring them one by one cost more CPU than a job at everyday rates.
        self.free_slots = concurrency
        self._slot_freed = gevent.event.Event()
        # Claimed batches wait here for a runner, a greenlet that runs batches one after
        # another; one is added only when every runner is busy. (A greenlet per batch would
        # cost a fresh stack each time: at everyday rates, a batch is one job.)
        self.batches: Queue = Queue()
        self.runners = Group()
        self.waiting_runners = 0
        # The claim loop and the finisher each talk to Redis over a connection of their own.
        self.claims = feed.with_own_connection()
        self.finisher = Finisher(
            feed.with_own_connection(), metrics, notify=finish_notices, on_settled=self._settled
        )
        # Every claim this worker holds (its lease is renewed by the heartbeat).
        self.held: set[str] = set()
        # A claim failed (its reply may be lost with the claim made): adopt before claiming again.
        self._claim_failed = False
        # The jobs handed to the runners and not yet through the pipeline, in claim order.
        self.in_flight: dict[str, None] = {}
        # After a claim that left slots free: wait a little so jobs come in batches (bounded by
        # claim_linger, the longest a job waits for others to be claimed with it).
        self.linger = ClaimLinger(longest=claim_linger, target=claim_batch)
        # Finishes that came while the claim loop lingered: written ahead of its next claim.
        self._riding: list[Outcome] = []
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
            if not self.free_slots:
                # All slots taken: the batches holding them are watched themselves.
                self._give_back_ride()  # those finishes hold slots: no claim comes to carry them
                with idle():
                    self.finisher.hurry()  # slots whose jobs are done wait for that to be written
                    self._slot_freed.clear()
                    self._slot_freed.wait(1.0)
                continue
            free = min(self.free_slots, self.claim_batch)
            self.free_slots -= free
            riding, self._riding = self._riding, []
            if riding:  # one round trip for these finishes and the claim
                self.claims.finish_ahead(
                    [o.job_id for o in riding], ["published"] * len(riding), notify=self.finisher.notify
                )
            try:
                if self._claim_failed:
                    # The failed claim may have been made with its reply lost: those jobs
                    # come first, in their place, before anything newer is claimed.
                    jobs = self.claims.adopt(self.held, free)
                    self._claim_failed = False
                    if jobs:
                        log.warning(
                            "feed %s: took up %d jobs claimed for this worker whose claim's reply was lost",
                            self.feed.name,
                            len(jobs),
                        )
                else:
                    # Blocks (up to WAIT_FOR_JOBS) until a job is put if none is ready: one round
                    # trip per claim whether or not the feed was empty.
                    jobs = self.claims.claim(free, mirror=self.mirror, wait=WAIT_FOR_JOBS)
            except Exception as exc:
                self._claim_failed = True
                self._free_slots(free)
                delay = backoff.failed()
                log.warning("cannot claim from feed %s (%s); retrying in %.2fs", self.feed.name, exc, delay)
                pause(delay)
                continue
            finally:
                if riding:
                    self._rode(riding)
            backoff.succeeded()
            self._free_slots(free - len(jobs))
            self.held.update(job.id for job in jobs)
            if not jobs:
                continue
            if self.stopping:  # claimed as we were told to stop: give them back
                for job in jobs:
                    self.finisher.send(Outcome(job.id, Settle.RELEASE))
                continue
            # A claimed batch runs as one: the stages run its jobs in claim order, and
            # the publisher queues all their POSTs at once.
            self.in_flight.update(dict.fromkeys(job.id for job in jobs))
            if self.waiting_runners <= self.batches.qsize():
                self.runners.spawn(self._runner)
            self.batches.put(jobs)
            if self.metrics is not None:
                self.metrics.in_flight.set(len(self.held))
                self.metrics.claims.inc()
                self.metrics.claimed.inc(len(jobs))
            if len(jobs) < free:  # the feed is empty for now
                linger = self.linger.claimed(len(jobs), time.monotonic())
                if linger:
                    # The jobs in flight are mostly done meanwhile: their finishes ride with
                    # the next claim (a finish of its own cost a round trip at everyday rates).
                    self.finisher.offer_ride(self._riding)
                    try:
                        pause(linger)
                    finally:
                        self.finisher.withdraw_ride()

    def _rode(self, riding: list[Outcome]) -> None:
        """The claim carrying these finishes is done: settled, or handed to the finisher."""
        held = self.claims.finished_ahead()
        if held is None:  # not written, or not surely: the finisher writes them (again)
            self.finisher.give_back(riding)
        else:
            self.finisher.written(Settle.FINISH, [o.job_id for o in riding], held)

    def _give_back_ride(self) -> None:
        if self._riding:
            riding, self._riding = self._riding, []
            self.finisher.give_back(riding)

    def _free_slots(self, count: int) -> None:
        if count:
            self.free_slots += count
            self._slot_freed.set()

    def _settled(self, job_ids: list[str]) -> None:
        self.held.difference_update(job_ids)
        self._free_slots(len(job_ids))
        if self.metrics is not None:
            self.metrics.in_flight.set(len(self.held))

    def _runner(self) -> None:
        while True:
            self.waiting_runners += 1
            try:
                jobs = self.batches.get()
            finally:
                self.waiting_runners -= 1
            if jobs is None:  # stopping
                return
            self.process_batch(jobs)

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
        self._give_back_ride()
        for _ in range(len(self.runners)):  # after the batches already waiting
            self.batches.put(None)
        self.runners.join(timeout=grace)
        self.runners.kill(block=True, timeout=2)
        left = list(self.in_flight)  # the batches never run, or killed before they were done
        self.in_flight.clear()
        if left:
            log.warning("giving %d unfinished jobs back to the queue", len(left))
            for job_id in left:
                self.finisher.send(Outcome(job_id, Settle.RELEASE))
        self.finisher.flush()
        self.finisher.stop()
        self.claims.release_connection()
        self.finisher.feed.release_connection()
