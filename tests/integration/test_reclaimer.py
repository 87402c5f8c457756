"""The reclaimer and the heartbeat against a real redis-server: after an outage longer
than the visibility timeout, live workers keep their claims; dead ones lose them."""

from __future__ import annotations

import gevent
import pytest

from realtime_glue.heartbeat import Heartbeat
from realtime_glue.jobqueue import JobFeed, JobState
from realtime_glue.reclaimer import Reclaimer

VISIBILITY = 1.0


def age_claims(client, feed: str, seconds: float) -> None:
    """Drive the clock: every claim and heartbeat of the feed becomes `seconds` older,
    as after an outage of that long during which nobody could renew anything."""
    shift = int(seconds * 1000)
    for key in (f"feed.claimed:{feed}", f"feed.workers:{feed}"):
        for member, score in client.zrange(key, 0, -1, withscores=True):
            client.zadd(key, {member: score - shift})


@pytest.fixture
def client(redis_server):
    return redis_server.client()


def test_the_first_worker_back_after_a_long_outage_leaves_live_workers_claims_alone(client):
    a, b, dead = (JobFeed(client, "jobs", worker_id=w) for w in ("a", "b", "dead"))
    a.put_many([f"job {n}" for n in range(5)])
    held_by_a = [job.id for job in a.claim(2)]
    held_by_b = [job.id for job in b.claim(2)]
    (orphan,) = [job.id for job in dead.claim(1)]
    age_claims(client, "jobs", 600)  # Redis was away for ten minutes
    # b's process is the first back: its reclaimer runs before anyone renewed a lease.
    reclaimer = Reclaimer([b], visibility_timeout=VISIBILITY, max_failures=5)
    reclaimer.reclaim_once()
    assert client.zcard("feed.claimed:jobs") == 5, "claims were reclaimed before live workers could renew"
    # Both live workers renew what they hold; the dead one cannot.
    beats = [
        Heartbeat([(a, lambda: held_by_a)], interval=VISIBILITY / 3).start(),
        Heartbeat([(b, lambda: held_by_b)], interval=VISIBILITY / 3).start(),
    ]
    try:
        gevent.sleep(VISIBILITY * 1.5)  # the heartbeats are greenlets: let them run
        reclaimer.reclaim_once()
    finally:
        for beat in beats:
            beat.stop()
    for job_id in held_by_a + held_by_b:
        assert a.state(job_id) is JobState.CLAIMED
        assert client.hget("feed.cancelled:jobs", job_id) is None  # no failure counted
    assert a.state(orphan) is JobState.READY
    assert client.hget("feed.cancelled:jobs", orphan) == b"1"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_reclaimer_that_lost_redis_waits_a_visibility_timeout_of_contact_before_reclaiming(redis_aof):
    """The grace counts from the first answer after the outage, not from the last failure:
    Redis may come back long after the reclaimer last tried."""
    client = redis_aof.client()
    worker = JobFeed(client, "jobs", worker_id="w")
    worker.put("job")
    (job,) = worker.claim(1)
    clock = Clock()
    reclaimer = Reclaimer([worker], visibility_timeout=30, max_failures=5, clock=clock)
    reclaimer.reclaim_once()  # first contact
    clock.now = 31
    worker.heartbeat(held=[job.id])
    reclaimer.reclaim_once()  # a fresh lease: nothing to do
    assert worker.state(job.id) is JobState.CLAIMED
    redis_aof.stop()
    clock.now = 40
    with pytest.raises(Exception):  # noqa: B017 - whatever redis-py raises for a dead server
        reclaimer.reclaim_once()
    clock.now = 640  # Redis is back ten minutes later; the lease looks 600 s old
    redis_aof.start()
    client = redis_aof.client()
    age_claims(client, "jobs", 600)
    reclaimer.reclaim_once()
    clock.now = 660
    reclaimer.reclaim_once()  # still within 30 s of contact: the worker may yet renew
    assert JobFeed(client, "jobs").state(job.id) is JobState.CLAIMED
    clock.now = 671
    reclaimer.reclaim_once()  # nobody renewed it in 30 s of contact: now it goes back
    assert JobFeed(client, "jobs").state(job.id) is JobState.READY
