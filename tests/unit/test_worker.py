"""The worker with a fake feed: what it writes for each job, and that nothing stays claimed."""

from __future__ import annotations

import gevent
import gevent.event

from realtime_glue.errors import Reject, TransientFailure
from realtime_glue.jobqueue import ClaimedJob
from realtime_glue.worker import PipelineWorker


class Feed:
    name = "jobs"

    def __init__(self, count: int):
        self.ready = [ClaimedJob(f"j{n}", b"{}", 0) for n in range(count)]
        self.written: list[tuple[str, list[str]]] = []

    def claim(self, count, mirror=None):
        jobs, self.ready = self.ready[:count], self.ready[count:]
        return jobs

    def wait_for_jobs(self, timeout):
        gevent.sleep(0.001)
        return bool(self.ready)

    def finish(self, ids, results=None, notify=False):
        self.written.append(("finish", list(ids)))
        return len(ids)

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
