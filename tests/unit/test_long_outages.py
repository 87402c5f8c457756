"""Retry loops under outages far longer than the tests last: the attempt counters are driven
past 2,000 failures in a row (sleeps shortened to a yield), and every loop carries on."""

from __future__ import annotations

import json
import statistics
import time

import gevent
import pytest

from realtime_glue.backoff import Backoff, backoff_delay
from realtime_glue.errors import PublishFailed
from realtime_glue.jobqueue import ClaimedJob
from realtime_glue.publishers.node_sender import NodeSender
from realtime_glue.worker import PipelineWorker

FAILURES = 3000  # ~4 hours of Redis down at the 5 s cap; backoff overflowed after ~1,075
_real_sleep = gevent.sleep


@pytest.fixture
def no_waiting(monkeypatch):
    """Every backoff sleep becomes a yield, so thousands of retries take a moment."""
    monkeypatch.setattr(gevent, "sleep", lambda seconds=0, ref=True: _real_sleep(0))


def wait_for(predicate, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        _real_sleep(0)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.parametrize("attempt", [0, 1, 10, 60, 1_024, 1_100, 2_000, 10**6])
def test_backoff_is_capped_for_any_attempt(attempt):
    delay = backoff_delay(attempt, base=0.05, cap=5.0)
    assert 0 < delay <= 5.0


def test_backoff_is_jittered_so_retries_do_not_march_together():
    delays = [backoff_delay(5_000, base=0.05, cap=5.0) for _ in range(200)]
    assert min(delays) >= 2.5  # equal jitter: half fixed, half random
    assert statistics.pstdev(delays) > 0.1
    assert len(set(delays)) > 100


class Outage:
    """Raises ConnectionError `failures` times, then lets calls through."""

    def __init__(self, failures: int):
        self.left = failures

    def check(self) -> None:
        if self.left > 0:
            self.left -= 1
            raise ConnectionError("Redis is down")


class FlakyFeed:
    """A JobFeed whose claims and finishes fail during an outage."""

    name = "jobs"

    def __init__(self, claim_outage: Outage, finish_outage: Outage):
        self.claim_outage = claim_outage
        self.finish_outage = finish_outage
        self.ready = [ClaimedJob(f"j{n}", b"{}", 0) for n in range(3)]
        self.finished: list[str] = []

    def with_own_connection(self):
        return self

    def release_connection(self):
        pass

    def claim(self, count, mirror=None, wait=0.0):
        self.claim_outage.check()
        jobs, self.ready = self.ready[:count], self.ready[count:]
        if not jobs and wait:
            _real_sleep(0)  # a claim that waits for the next job
        return jobs

    def adopt(self, held, count):
        self.claim_outage.check()  # a Redis call like a claim: it fails the same way
        return []

    def finish(self, ids, results=None, notify=False):
        self.finish_outage.check()
        self.finished.extend(ids)
        return len(ids)

    ahead: list[str] = []

    def finish_ahead(self, ids, results=None, notify=False):
        self.ahead = list(ids)

    def finished_ahead(self):
        ids, self.ahead = self.ahead, []
        try:
            return self.finish(ids)
        except ConnectionError:  # not written: the finisher writes them
            return None


class PassThrough:
    def run_batch(self, messages):
        return [None] * len(messages)


def test_the_claim_loop_survives_thousands_of_failed_claims(no_waiting):
    feed = FlakyFeed(Outage(FAILURES), Outage(0))
    worker = PipelineWorker(feed, PassThrough(), concurrency=8, claim_batch=8)
    worker.start()
    try:
        wait_for(lambda: feed.finished == ["j0", "j1", "j2"], "the jobs claimed after the outage finish")
        assert feed.claim_outage.left == 0
    finally:
        worker.stopping = True
        worker.finisher.stop(timeout=1)


def test_the_finisher_survives_thousands_of_failed_finishes(no_waiting):
    feed = FlakyFeed(Outage(0), Outage(FAILURES))
    worker = PipelineWorker(feed, PassThrough(), concurrency=8, claim_batch=8)
    worker.start()
    try:
        wait_for(lambda: feed.finished == ["j0", "j1", "j2"], "the finishes written after the outage")
        assert feed.finish_outage.left == 0
    finally:
        worker.stopping = True
        worker.finisher.stop(timeout=1)


class DownNode:
    label = "push1:80"
    timeout = 5.0

    def __init__(self, outage: Outage):
        self.outage = outage
        self.received: list[str] = []

    def start_publish(self, channel, event_id, body):
        return event_id

    def wait_for_answers(self, pendings, timeout):
        pass

    def finish_publish(self, pending, timeout):
        try:
            self.outage.check()
        except ConnectionError as exc:
            raise PublishFailed(f"{self.label}: {exc}") from None
        self.received.append(pending)


class BacklogFeed:
    name = "glue.backlog:p:push1:80"

    def __init__(self, records):
        self.ready = list(records)
        self.claimed = []

    def claim(self, count, mirror=None):
        jobs, self.ready = self.ready[:count], self.ready[count:]
        self.claimed += jobs
        return jobs

    def finish(self, ids, results=None, notify=False):
        self.claimed = [j for j in self.claimed if j.id not in ids]
        return len(ids)

    def release(self, ids):
        back = [j for j in self.claimed if j.id in ids]
        self.claimed = [j for j in self.claimed if j.id not in ids]
        self.ready = back + self.ready
        return len(back)

    def stall(self, job_id, reason):
        return True

    def trim(self, max_age, max_length):
        return 0, 0

    def counts(self):
        return {"ready": len(self.ready), "claimed": len(self.claimed), "stalled": 0}

    def wait_for_jobs(self, timeout):
        _real_sleep(0)
        return bool(self.ready)


def test_a_backlog_drainer_survives_a_node_down_for_thousands_of_retries(no_waiting, monkeypatch):
    records = [
        ClaimedJob(f"b{n}", json.dumps({"channel": "c", "event_id": f"e{n}", "body": "{}"}).encode(), 0)
        for n in range(3)
    ]
    node = DownNode(Outage(FAILURES))
    # Its backoff waits on its inbox (an Event, not a sleep): make that wait a yield too.
    monkeypatch.setattr(NodeSender, "_wait", lambda self, seconds: _real_sleep(0))
    sender = NodeSender(node, BacklogFeed(records))
    sender.start()
    try:
        wait_for(lambda: node.received == ["e0", "e1", "e2"], "the backlog delivered after the outage")
        wait_for(lambda: sender.live, "the node live again")
    finally:
        sender.stop(timeout=1)


def test_a_loops_backoff_counts_failures_and_starts_over_after_a_success():
    backoff = Backoff(base=0.1, cap=2.0)
    first = backoff.failed()
    assert 0.05 <= first <= 0.1
    for _ in range(FAILURES):
        assert backoff.failed() <= 2.0
    assert backoff.attempts == FAILURES + 1
    backoff.succeeded()
    assert backoff.failed() <= 0.1
