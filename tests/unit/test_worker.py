"""The worker with a fake feed: what it writes for each job, and that nothing stays claimed."""

from __future__ import annotations

import gevent
import gevent.event

from realtime_glue.claim_linger import ClaimLinger
from realtime_glue.errors import Reject, TransientFailure
from realtime_glue.jobqueue import ClaimedJob
from realtime_glue.worker import Finisher, Outcome, PipelineWorker, Settle


class Feed:
    name = "jobs"

    def __init__(self, count: int):
        self.ready = [ClaimedJob(f"j{n}", b"{}", 0) for n in range(count)]
        self.written: list[tuple[str, list[str]]] = []

    def with_own_connection(self):
        return self

    def release_connection(self):
        pass

    def claim(self, count, mirror=None, wait=0.0):
        jobs, self.ready = self.ready[:count], self.ready[count:]
        if not jobs and wait:
            gevent.sleep(0.001)  # a claim that waits for the next job
        return jobs

    def finish(self, ids, results=None, notify=False):
        self.written.append(("finish", list(ids)))
        return len(ids)

    # A finish riding with the next claim: written when the claim loop asks what it answered.
    ahead: list[str] = []

    def finish_ahead(self, ids, results=None, notify=False):
        self.ahead = list(ids)

    rode: list[str] = []

    def finished_ahead(self):
        ids, self.ahead = self.ahead, []
        self.rode = self.rode + ids
        return self.finish(ids) if ids else None

    def cancel(self, ids, count_failure=True):
        self.written.append(("retry", list(ids)))
        return len(ids)

    def release(self, ids):
        self.written.append(("release", list(ids)))
        return len(ids)

    def stall(self, job_id, reason):
        self.written.append(("stall", [job_id]))
        return True


def settle(worker: PipelineWorker, feed: Feed, jobs: int) -> None:
    worker.start()
    for _ in range(2000):
        if sum(len(ids) for _, ids in feed.written) >= jobs and not worker.held:
            break
        gevent.sleep(0.001)
    worker.stop(grace=1)


class Outcomes:
    def __init__(self, errors):
        self.errors = errors

    def run_batch(self, messages):
        return [self.errors.get(m.job_id) for m in messages]


def test_each_job_gets_what_its_outcome_says_in_order():
    feed = Feed(4)
    errors = {"j1": Reject("bad"), "j2": TransientFailure("later")}
    worker = PipelineWorker(feed, Outcomes(errors), concurrency=8, claim_batch=8)
    settle(worker, feed, 4)
    assert feed.written == [("finish", ["j0"]), ("stall", ["j1"]), ("retry", ["j2"]), ("finish", ["j3"])]
    assert worker.held == set()


def test_a_pipeline_that_raises_leaves_no_job_claimed():
    class Broken:
        def run_batch(self, messages):
            raise AttributeError("a bug")

    feed = Feed(3)
    worker = PipelineWorker(feed, Broken(), concurrency=8, claim_batch=8)
    settle(worker, feed, 3)
    assert feed.written == [("retry", ["j0", "j1", "j2"])]
    assert worker.held == set()


def test_stop_gives_an_unfinished_batch_back_in_claim_order():
    hang = gevent.event.Event()

    class Hangs:
        def run_batch(self, messages):
            hang.wait()

    feed = Feed(5)
    worker = PipelineWorker(feed, Hangs(), concurrency=8, claim_batch=8)
    worker.start()
    gevent.sleep(0.05)
    worker.stop(grace=0.1)
    assert feed.written == [("release", ["j0", "j1", "j2", "j3", "j4"])]
    assert worker.held == set()


def test_outcomes_that_come_one_at_a_time_are_written_together():
    feed = Feed(0)
    finisher = Finisher(feed, linger=30.0).start()
    finisher.send(Outcome("j0", Settle.FINISH))
    gevent.sleep(0)  # the finisher has the first and lingers for more
    finisher.send(Outcome("j1", Settle.FINISH))
    finisher.send(Outcome("j2", Settle.FINISH))
    assert feed.written == []
    assert finisher.flush(timeout=5)  # flushing hurries it
    assert feed.written == [("finish", ["j0", "j1", "j2"])]
    finisher.stop()


def test_a_worker_out_of_slots_does_not_wait_for_the_finisher_to_linger():
    feed = Feed(6)
    worker = PipelineWorker(feed, Outcomes({}), concurrency=2, claim_batch=2)
    worker.finisher.linger = 30.0
    settle(worker, feed, 6)
    assert [job for _, ids in feed.written for job in ids] == [f"j{n}" for n in range(6)]
    assert worker.held == set()


class YieldingFeed(Feed):
    """Claims take a moment, as a round trip to Redis does."""

    def claim(self, count, mirror=None, wait=0.0):
        gevent.sleep(0)
        return super().claim(count, mirror, wait)


class Runs:
    """Records which greenlet ran each batch; hangs on the jobs in `hang`."""

    def __init__(self, hang=()):
        self.greenlets = []
        self.hang = set(hang)
        self.release = gevent.event.Event()

    def run_batch(self, messages):
        self.greenlets.append(gevent.getcurrent())
        if any(m.job_id in self.hang for m in messages):
            self.release.wait()
        return [None] * len(messages)


def test_batches_one_after_another_reuse_their_greenlets():
    feed = YieldingFeed(20)
    runs = Runs()
    worker = PipelineWorker(feed, runs, concurrency=8, claim_batch=1)
    settle(worker, feed, 20)
    assert len(runs.greenlets) == 20
    assert len(set(runs.greenlets)) < 10


def test_a_batch_that_hangs_does_not_hold_up_the_next_ones():
    feed = YieldingFeed(5)
    runs = Runs(hang={"j0"})
    worker = PipelineWorker(feed, runs, concurrency=8, claim_batch=1)
    worker.start()
    for _ in range(2000):
        if sum(len(ids) for _, ids in feed.written) >= 4:
            break
        gevent.sleep(0.001)
    assert [job for _, ids in feed.written for job in ids] == ["j1", "j2", "j3", "j4"]
    runs.release.set()
    worker.stop(grace=1)
    assert [job for _, ids in feed.written for job in ids] == ["j1", "j2", "j3", "j4", "j0"]


class SteadyFeed(Feed):
    """Jobs put one at a time, one every `interval` seconds; records what each claim carried."""

    def __init__(self, count: int, interval: float):
        super().__init__(0)
        self.claims: list[list[str]] = []
        self.producer = gevent.spawn(self._put, count, interval)

    def _put(self, count, interval):
        for n in range(count):
            self.ready.append(ClaimedJob(f"j{n}", b"{}", 0))
            gevent.sleep(interval)

    def claim(self, count, mirror=None, wait=0.0):
        gevent.sleep(0)  # a round trip
        jobs = super().claim(count, mirror, wait)
        if jobs:
            self.claims.append([job.id for job in jobs])
        return jobs


def lingering_worker(feed, outcomes: dict | None = None) -> PipelineWorker:
    """A worker whose claim loop lingers up to 20 ms for 8 jobs after a claim that left slots free."""
    worker = PipelineWorker(feed, Outcomes(outcomes or {}), concurrency=64, claim_batch=64)
    worker.linger = ClaimLinger(longest=0.02, target=8)
    return worker


def test_jobs_that_come_one_at_a_time_at_a_steady_rate_are_claimed_together():
    feed = SteadyFeed(120, interval=0.001)
    worker = lingering_worker(feed)
    settle(worker, feed, 120)
    claimed = [job for claim in feed.claims for job in claim]
    assert claimed == [f"j{n}" for n in range(120)]  # each once, in order
    assert max(len(claim) for claim in feed.claims) >= 4
    assert len(feed.claims) < 60


def claims_at_1000_a_second(claim_linger: float) -> tuple[list[list[str]], list[float]]:
    """While 120 jobs came one a millisecond, with [queue] claim_linger: what each claim
    carried, and each wait the claim loop decided on after a claim that left slots free."""
    feed = SteadyFeed(120, interval=0.001)
    worker = PipelineWorker(feed, Outcomes({}), concurrency=64, claim_batch=64, claim_linger=claim_linger)
    worker.metrics = worker.finisher.metrics = Metrics()
    waits: list[float] = []
    decide = worker.linger.claimed

    def recorded(jobs: int, now: float) -> float:
        waits.append(decide(jobs, now))
        return waits[-1]

    worker.linger.claimed = recorded
    settle(worker, feed, 120)
    assert [job for claim in feed.claims for job in claim] == [f"j{n}" for n in range(120)]
    # What an operator sees of it: jobs per claim, from glue_jobs_claimed_total / glue_claims_total.
    assert (worker.metrics.claimed.value, worker.metrics.claims.value) == (120, len(feed.claims))
    return feed.claims, waits


def test_claim_linger_0_claims_each_job_the_moment_it_is_put():
    """The fewest waits, the most round trips: the claim loop never waits. A job is then
    claimed alone unless the machine stalls this process just as the next one comes (a
    loaded machine did, once), so the check is that most are, not all."""
    claims, waits = claims_at_1000_a_second(0.0)
    assert waits and set(waits) == {0.0}
    assert sum(len(claim) == 1 for claim in claims) > 60, claims


def test_claim_linger_20_ms_gathers_jobs_into_claims():
    """20 ms gathers a claim of 10 or more at 1,000 jobs a second, never more than claim_batch,
    and no job waits longer than that for company."""
    claims, waits = claims_at_1000_a_second(0.02)
    assert 0 < max(waits) <= 0.02
    assert 10 <= max(len(claim) for claim in claims) <= 64


def test_finishes_that_come_while_the_claim_loop_lingers_ride_with_its_next_claim():
    feed = SteadyFeed(120, interval=0.001)
    worker = lingering_worker(feed, {"j7": Reject("bad")})
    worker.finisher.linger = 30.0  # the finisher would hold them: only a ride writes them soon
    settle(worker, feed, 120)
    finished = [job for kind, ids in feed.written if kind == "finish" for job in ids]
    assert sorted(finished) == sorted(f"j{n}" for n in range(120) if n != 7)  # each once
    assert ("stall", ["j7"]) in feed.written  # a stall never rides: the finisher writes it
    assert len(feed.rode) > 60
    assert worker.finisher.pending == 0 and worker.held == set()


class RideLostFeed(SteadyFeed):
    """Every claim's reply is lost after Redis ran the finish ahead of it (or not): unknown."""

    def finished_ahead(self):
        self.ahead = []
        return None


def test_finishes_whose_ride_was_not_surely_written_are_written_by_the_finisher():
    feed = RideLostFeed(60, interval=0.001)
    worker = lingering_worker(feed)
    settle(worker, feed, 60)
    finished = [job for kind, ids in feed.written if kind == "finish" for job in ids]
    assert sorted(finished) == sorted(f"j{n}" for n in range(60))
    assert worker.finisher.pending == 0 and worker.held == set()


class Count:
    def __init__(self):
        self.value = 0

    def inc(self, amount=1):
        self.value += amount

    def set(self, value):
        self.value = value


class Metrics:
    def __init__(self):
        self.processed, self.in_flight, self.failed, self.stalled = Count(), Count(), Count(), Count()
        self.claims, self.claimed = Count(), Count()


class RideDoneReplyLostFeed(SteadyFeed):
    """Redis finishes each ride's jobs, but the claim's reply is lost: the worker cannot know
    they are done, writes them again, and finds them finished."""

    def __init__(self, count: int, interval: float):
        super().__init__(count, interval)
        self.done: set[str] = set()

    def finish(self, ids, results=None, notify=False):
        self.written.append(("finish", list(ids)))
        newly = set(ids) - self.done
        self.done |= newly
        return len(newly)

    def finished_ahead(self):
        ids, self.ahead = self.ahead, []
        if ids:
            self.finish(ids)
        return None


def test_jobs_finished_by_a_write_whose_reply_was_lost_still_count_as_processed():
    feed = RideDoneReplyLostFeed(60, interval=0.001)
    worker = lingering_worker(feed)
    worker.metrics = worker.finisher.metrics = Metrics()
    settle(worker, feed, 60)
    assert feed.done == {f"j{n}" for n in range(60)}
    writes = [job for kind, ids in feed.written if kind == "finish" for job in ids]
    assert len(writes) > len(set(writes))  # rides were lost and written again
    assert worker.metrics.processed.value == 60  # each job once, whoever's write finished it


def test_a_trickle_of_jobs_is_claimed_job_by_job_without_lingering():
    feed = SteadyFeed(3, interval=0.05)  # a trickle: 20 jobs a second
    worker = PipelineWorker(feed, Outcomes({}), concurrency=8, claim_batch=8)
    # Lingers (up to a second, which would claim j1 and j2 together) only above 60 jobs a second.
    worker.linger = ClaimLinger(longest=1.0, min_expected=60)
    settle(worker, feed, 3)
    assert feed.claims == [["j0"], ["j1"], ["j2"]]
    assert feed.written == [("finish", ["j0"]), ("finish", ["j1"]), ("finish", ["j2"])]


def test_a_claim_that_fills_every_free_slot_does_not_linger():
    feed = YieldingFeed(16)
    worker = PipelineWorker(feed, Outcomes({}), concurrency=16, claim_batch=8)
    worker.linger = ClaimLinger(longest=30.0, min_expected=0)  # would linger after any short claim
    settle(worker, feed, 16)
    assert sorted(job for _, ids in feed.written for job in ids) == sorted(f"j{n}" for n in range(16))


class LostReplyFeed(Feed):
    """The first claim is made in Redis but its reply never arrives (the connection broke)."""

    def __init__(self, count: int):
        super().__init__(count)
        self.lost: list[ClaimedJob] = []
        self.calls: list[str] = []

    def claim(self, count, mirror=None, wait=0.0):
        self.calls.append("claim")
        if not self.lost and not self.calls.count("adopt"):
            self.lost, self.ready = self.ready[:2], self.ready[2:]
            raise ConnectionError("connection lost with the claim made")
        return super().claim(count, mirror, wait)

    def adopt(self, held, count):
        self.calls.append("adopt")
        adopted = [job for job in self.lost if job.id not in held][:count]
        self.lost = []
        return adopted


def test_jobs_whose_claim_reply_was_lost_are_taken_up_before_anything_newer():
    feed = LostReplyFeed(5)
    worker = PipelineWorker(feed, Outcomes({}), concurrency=8, claim_batch=8)
    settle(worker, feed, 5)
    finished = [job_id for kind, ids in feed.written if kind == "finish" for job_id in ids]
    assert feed.calls[:3] == ["claim", "adopt", "claim"]
    assert finished == ["j0", "j1", "j2", "j3", "j4"]  # the lost claim's two first, in their order


def test_a_write_that_finds_its_jobs_done_says_an_earlier_write_may_have_done_them(caplog):
    """A ride whose claim was cut off as Redis died may have been done with its reply lost:
    written again, it finds nothing to finish. The log must not say only that the claims
    were reclaimed (nothing was)."""
    finisher = Finisher(Feed(0))
    finisher.pending = 2
    finisher.written(Settle.FINISH, ["j1", "j2"], 0)
    assert "2 of 2 jobs were not finished by this write" in caplog.text
    assert "reply was lost" in caplog.text
    assert finisher.pending == 0
