"""The Thoonk job feed against a real redis-server: atomic claims, expiry, dead-letter."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from realtime_glue.jobqueue import JobFeed, JobState


@pytest.fixture
def client(redis_server):
    return redis_server.client()


def feed_for(client, name="jobs", worker="w1"):
    return JobFeed(client, name, worker_id=worker)


def where_is(client, feed: str, job_id: str) -> list[str]:
    """Every structure of the feed that holds the id (checked key by key, not by JobFeed.state)."""
    places = []
    if job_id.encode() in client.lrange(f"feed.ids:{feed}", 0, -1):
        places.append("ready")
    if client.zscore(f"feed.claimed:{feed}", job_id) is not None:
        places.append("claimed")
    if client.sismember(f"feed.stalled:{feed}", job_id):
        places.append("stalled")
    return places


def test_claims_come_oldest_first_and_priority_jumps_the_queue(client):
    feed = feed_for(client)
    first, second = feed.put("a"), feed.put("b")
    urgent = feed.put("c", priority=True)
    claimed = feed.claim(3)
    assert [job.id for job in claimed] == [urgent, first, second]
    assert [job.item for job in claimed] == [b"c", b"a", b"b"]


def test_a_claimed_job_is_in_exactly_one_structure_at_every_step(client):
    feed = feed_for(client)
    job_id = feed.put("payload")
    assert where_is(client, "jobs", job_id) == ["ready"] and feed.state(job_id) is JobState.READY
    (job,) = feed.claim(10)
    assert where_is(client, "jobs", job_id) == ["claimed"] and feed.state(job_id) is JobState.CLAIMED
    assert client.hget("feed.claimedby:jobs", job_id) == b"w1"
    assert feed.cancel([job.id]) == 1
    assert where_is(client, "jobs", job_id) == ["ready"]
    (job,) = feed.claim(10)
    assert job.failures == 1
    assert feed.stall(job.id, "bad payload")
    assert where_is(client, "jobs", job_id) == ["stalled"] and feed.state(job_id) is JobState.STALLED
    assert feed.stalled_jobs() == {job_id: "bad payload"}
    assert feed.count_by_state() == {JobState.READY: 0, JobState.CLAIMED: 0, JobState.STALLED: 1}
    assert feed.retry(job_id)
    assert where_is(client, "jobs", job_id) == ["ready"]
    (job,) = feed.claim(10)
    assert feed.finish([job.id]) == 1
    assert where_is(client, "jobs", job_id) == [] and feed.state(job_id) is None
    assert client.hget("feed.items:jobs", job_id) is None
    assert client.get("feed.finishes:jobs") == b"1"


def test_batched_finish_reports_only_jobs_still_claimed(client):
    feed = feed_for(client)
    ids = feed.put_many([f"job {i}" for i in range(100)])
    claimed = feed.claim(100)
    assert len(claimed) == 100
    feed.release([ids[0]])  # given back: no longer ours to finish
    assert feed.finish([job.id for job in claimed]) == 99
    counts = feed.counts()
    assert counts["ready"] == 1 and counts["claimed"] == 0 and counts["finishes"] == 99


def test_release_keeps_the_place_and_does_not_count_a_failure(client):
    feed = feed_for(client)
    first, second = feed.put("first"), feed.put("second")
    (job,) = feed.claim(1)
    assert job.id == first
    feed.release([first])
    again = feed.claim(2)
    assert [j.id for j in again] == [first, second]
    assert again[0].failures == 0


def test_claims_of_a_silent_worker_go_back_to_the_queue_with_a_failure(client):
    dead = feed_for(client, worker="dead")
    job_id = dead.put("x")
    dead.heartbeat()
    dead.claim(1)
    alive = feed_for(client, worker="alive")
    alive.heartbeat()
    # Within the visibility timeout nothing moves.
    assert alive.reclaim_expired(visibility_timeout=30, max_failures=5) == (0, 0)
    time.sleep(1.1)
    alive.heartbeat()
    assert alive.reclaim_expired(visibility_timeout=1, max_failures=5) == (1, 0)
    (job,) = alive.claim(1)
    assert job.id == job_id and job.failures == 1


def test_a_live_worker_keeps_the_claims_it_renews_past_the_timeout(client):
    feed = feed_for(client)
    feed.put("slow job")
    (job,) = feed.claim(1)
    time.sleep(1.1)
    assert feed.heartbeat(held=[job.id]) == 1
    assert feed.reclaim_expired(visibility_timeout=1, max_failures=5) == (0, 0)
    assert feed.counts()["claimed"] == 1


def test_a_job_that_keeps_expiring_is_stalled_with_the_reason(client):
    feed = feed_for(client, worker="crashy")
    job_id = feed.put("poison")
    for _ in range(3):
        feed.claim(1)
        time.sleep(0.25)
        client.zrem("feed.workers:jobs", "crashy")  # the worker died
        feed.reclaim_expired(visibility_timeout=0.2, max_failures=3)
    assert where_is(client, "jobs", job_id) == ["stalled"]
    assert "claim expired 3 times" in feed.stalled_jobs()[job_id]
    assert client.hget("feed.items:jobs", job_id) == b"poison"  # nothing dropped


def test_a_stuck_thoonk_claim_with_no_glue_worker_is_reclaimed(client):
    """Thoonk's own consumers never release a claim when they crash; the glue does."""
    client.lpush("feed.ids:jobs", "t1")
    client.hset("feed.items:jobs", "t1", "from thoonk")
    client.rpop("feed.ids:jobs")  # a Thoonk consumer's BRPOP ...
    client.zadd("feed.claimed:jobs", {"t1": int(time.time() * 1000) - 60_000})  # ... and its claim
    feed = feed_for(client)
    assert feed.reclaim_expired(visibility_timeout=30, max_failures=5) == (1, 0)
    assert feed.claim(1)[0].item == b"from thoonk"


def test_a_claim_that_waits_claims_the_job_put_meanwhile(client):
    feed = feed_for(client)
    producer = feed_for(client, worker="producer")
    put = threading.Timer(0.2, lambda: producer.put("late", job_id="late"))
    put.start()
    (job,) = feed.claim(5, wait=3)
    put.join()
    assert (job.id, job.item) == ("late", b"late")
    assert where_is(client, "jobs", "late") == ["claimed"]
    assert client.hget("feed.claimedby:jobs", "late") == b"w1"


def test_a_claim_that_waits_takes_what_is_ready_at_once_oldest_first(client):
    feed = feed_for(client)
    ids = feed.put_many(["a", "b", "c"])
    assert [job.id for job in feed.claim(2, wait=1)] == ids[:2]
    assert where_is(client, "jobs", ids[2]) == ["ready"]


def test_a_claim_that_waits_for_nothing_leaves_the_feed_as_it_was(client):
    feed = feed_for(client)
    assert feed.claim(5, wait=0.1) == []
    assert client.exists("feed.ids:jobs", "feed.claimed:jobs", "feed.claimedby:jobs") == 0


def test_a_claim_that_waits_after_redis_lost_its_scripts_still_claims(client):
    feed = feed_for(client)
    feed.claim(1, wait=0.1)  # the claim script is loaded now
    client.script_flush()  # as after a restart of Redis
    job_id = feed.put("a")
    assert [job.id for job in feed.claim(1, wait=1)] == [job_id]
    assert where_is(client, "jobs", job_id) == ["claimed"]


def test_a_feed_on_a_connection_of_its_own_claims_and_finishes_like_any_other(client):
    feed = feed_for(client).with_own_connection()
    ids = feed.put_many(["a", "b", "c"])
    assert [job.item for job in feed.claim(2, wait=1)] == [b"a", b"b"]
    assert feed.finish(ids[:2]) == 2
    assert feed_for(client, worker="w2").with_own_connection().finish(ids[2:]) == 0  # not its claim
    (job,) = feed.claim(5, wait=1)
    assert job.id == ids[2] and feed.cancel([job.id]) == 1
    assert where_is(client, "jobs", ids[2]) == ["ready"]
    assert [where_is(client, "jobs", i) for i in ids[:2]] == [[], []]
    feed.release_connection()


def test_a_feed_on_a_connection_of_its_own_comes_back_after_redis_lost_it_and_its_scripts(client):
    feed = feed_for(client).with_own_connection()
    feed.claim(1, wait=0.1)
    client.script_flush()  # as after a restart of Redis
    client.client_kill_filter(_type="normal", skipme=True)  # its connection is gone too
    job_id = feed_for(client, worker="producer").put("a")
    claimed = None
    for _ in range(2):  # as the claim loop does: a failed claim is tried again
        try:
            claimed = feed.claim(1, wait=1)
            break
        except redis.ConnectionError:
            continue
    assert [job.id for job in claimed] == [job_id]
    assert where_is(client, "jobs", job_id) == ["claimed"]


def test_a_finish_written_ahead_of_a_claim_is_done_in_the_same_call(client):
    feed = feed_for(client).with_own_connection()
    ids = feed.put_many(["a", "b", "c", "d"])
    assert [job.id for job in feed.claim(2, wait=1)] == ids[:2]
    client.script_flush()  # as after a restart of Redis: the finish ahead is loaded and run
    feed.finish_ahead(ids[:2], ["published"] * 2, notify=True)
    assert [job.id for job in feed.claim(5, wait=1)] == ids[2:]
    assert feed.finished_ahead() == 2  # both were still its claims
    assert [where_is(client, "jobs", i) for i in ids] == [[], [], ["claimed"], ["claimed"]]
    assert feed.finished_ahead() is None  # told once: nothing rides with the next call
    feed.release_connection()


def test_a_finish_ahead_of_a_refused_claim_still_tells_what_it_did(client):
    """A claim Redis refuses (a stale lease token: FENCED) still ran the finish written ahead
    of it: the caller learns it was done, and need not finish those jobs again."""
    feed = feed_for(client).with_own_connection()
    ids = feed.put_many(["a", "b"])
    feed.claim(2, wait=1)
    client.set("feed.lease:jobs", "someone else")
    feed.finish_ahead(ids, ["published"] * 2)
    with pytest.raises(redis.ResponseError, match="FENCED"):
        feed.claim(1, wait=1, lease_token="stale")
    assert feed.finished_ahead() == 2
    assert [where_is(client, "jobs", i) for i in ids] == [[], []]
    client.delete("feed.lease:jobs")
    assert feed.claim(1) == []  # the connection is still in step after the refusal
    feed.release_connection()


def test_wait_for_jobs_claims_nothing(client):
    feed = feed_for(client)
    assert feed.wait_for_jobs(timeout=0.1) is False
    job_id = feed.put("x")
    assert feed.wait_for_jobs(timeout=1) is True
    assert where_is(client, "jobs", job_id) == ["ready"]


def test_retract_removes_the_job_everywhere(client):
    feed = feed_for(client)
    queued = feed.put("q")
    claimed = feed.put("c")
    feed.claim(1)  # takes `queued`
    assert feed.retract(claimed) and feed.retract(queued)
    assert feed.claim(5) == []
    assert client.hlen("feed.items:jobs") == 0
    assert client.zcard("feed.claimed:jobs") == 0


def test_mirror_feed_gets_a_copy_of_every_claimed_job(client):
    feed = feed_for(client, "old")
    mirror = JobFeed(client, "old.shadow")
    ids = feed.put_many(["a", "b"])
    feed.claim(2, mirror=mirror)
    copies = mirror.claim(2)
    assert sorted(j.id for j in copies) == sorted(ids)
    assert sorted(j.item for j in copies) == [b"a", b"b"]


def test_end_to_end_acks_report_unfinished_jobs_and_their_age(client):
    feed = feed_for(client)
    done, pending = feed.put("done"), feed.put("pending")
    feed.claim(1)
    feed.finish([done])
    sec, usec = client.time()
    now_ms = sec * 1000 + usec // 1000
    assert feed.unfinished_before(now_ms) == [pending]
    time.sleep(0.2)
    assert feed.oldest_unfinished_age() >= 0.2
    feed.claim(1)
    feed.finish([pending])
    assert feed.oldest_unfinished_age() is None


def test_finish_sends_thoonks_job_finish_notice(client):
    feed = feed_for(client)
    pubsub = client.pubsub()
    pubsub.subscribe("job.finish:jobs")
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"  # before anything is finished
    job_id = feed.put("x")
    feed.claim(1)
    feed.finish([job_id], results=["ok"], notify=True)
    notice = pubsub.get_message(timeout=10)
    assert notice["data"] == f"{job_id}\0ok".encode()


def test_a_released_batch_comes_back_in_its_order_ahead_of_newer_jobs(client):
    feed = feed_for(client)
    batch = feed.put_many([f"job {n}" for n in range(10)])
    newer = feed.put("newer")
    claimed = feed.claim(10)
    assert [job.id for job in claimed] == batch
    assert feed.release([job.id for job in claimed]) == 10
    again = feed.claim(11)
    assert [job.id for job in again] == [*batch, newer]


def test_failed_jobs_of_a_batch_are_retried_in_their_order_before_newer_jobs(client):
    feed = feed_for(client)
    batch = feed.put_many([f"job {n}" for n in range(6)])
    newer = feed.put("newer")
    feed.claim(6)
    failed = [batch[1], batch[2], batch[4]]
    assert feed.cancel(failed) == 3
    feed.finish([batch[0], batch[3], batch[5]])
    again = feed.claim(4)
    assert [job.id for job in again] == [*failed, newer]
    assert [job.failures for job in again] == [1, 1, 1, 0]


def age_claims(client, feed: str, seconds: float) -> None:
    """Drive the clock: every claim and heartbeat of the feed becomes `seconds` older."""
    shift = int(seconds * 1000)
    for key in (f"feed.claimed:{feed}", f"feed.workers:{feed}"):
        for member, score in client.zrange(key, 0, -1, withscores=True):
            client.zadd(key, {member: score - shift})


def test_a_claim_whose_reply_was_lost_goes_back_although_its_worker_lives(client):
    feed = feed_for(client, worker="w1")
    kept, lost, later = feed.put_many(["kept", "lost", "later"])
    feed.claim(1)
    feed.claim(1)  # this reply never reached the worker: it holds `kept` and, claimed next, `later`
    feed.claim(1)
    age_claims(client, "jobs", 60)
    assert feed.heartbeat(held=[kept, later]) == 2  # the worker is alive and renews what it holds
    assert feed.reclaim_expired(visibility_timeout=30, max_failures=5) == (1, 0)
    assert feed.state(kept) is JobState.CLAIMED and feed.state(later) is JobState.CLAIMED
    (again,) = feed.claim(1)
    assert again.id == lost and again.failures == 1


def test_no_wall_of_orphans_stops_reclaiming(client):
    feed = feed_for(client, worker="w1")
    feed.put_many([f"job {n}" for n in range(1500)])
    assert len(feed.claim(1500)) == 1500  # every reply lost; the worker lives on
    age_claims(client, "jobs", 60)
    feed.heartbeat(held=[])
    assert feed.reclaim_expired(visibility_timeout=30, max_failures=5) == (1500, 0)
    assert feed.counts()["ready"] == 1500 and feed.counts()["claimed"] == 0


def test_a_worker_cannot_finish_cancel_stall_or_release_a_claim_it_lost(client):
    slow, other = feed_for(client, worker="slow"), feed_for(client, worker="other")
    job_id = slow.put("job")
    slow.claim(1)
    age_claims(client, "jobs", 60)  # slow stopped renewing (paused, partitioned)
    assert other.reclaim_expired(visibility_timeout=30, max_failures=5) == (1, 0)
    (job,) = other.claim(1)
    assert job.id == job_id
    # slow comes back and acts on the claim it no longer holds: nothing happens.
    assert slow.finish([job_id]) == 0
    assert slow.cancel([job_id]) == 0
    assert slow.release([job_id]) == 0
    assert slow.stall(job_id, "late") is False
    assert slow.heartbeat(held=[job_id]) == 0
    assert feed_for(client).state(job_id) is JobState.CLAIMED
    assert client.hget("feed.claimedby:jobs", job_id) == b"other"
    assert other.finish([job_id]) == 1
    assert client.get("feed.finishes:jobs") == b"1"
    assert where_is(client, "jobs", job_id) == []


def test_trim_drops_what_was_held_too_long_then_the_oldest_beyond_the_limit(client):
    feed = feed_for(client, "backlog")
    ids = feed.put_many([f"record {n}" for n in range(6)])
    for old in ids[:2]:  # held ten minutes ago
        client.zincrby("feed.published:backlog", -600_000, old)
    (claimed,) = feed.claim(1)  # a record being delivered is left alone
    assert claimed.id == ids[0]
    # Ready: ids[1] (too old), ids[2..5]; a limit of 2 drops ids[2] and ids[3] too.
    assert feed.trim(max_age=300, max_length=2) == (1, 2)
    assert [job.id for job in feed_for(client, "backlog", worker="w2").claim(10)] == ids[4:]
    assert feed.dropped_counts() == {"expired": 1, "full": 2}
    assert client.hmget("feed.items:backlog", ids[1], ids[2], ids[3]) == [None, None, None]
    assert feed.state(claimed.id) is JobState.CLAIMED


def test_putting_the_same_ids_again_puts_nothing_twice(client):
    """A hold retried after its reply was lost (Redis killed mid-call) must not duplicate."""
    feed = feed_for(client, "backlog")
    assert feed.put_many(["a", "b"], ids=["m1", "m2"]) == ["m1", "m2"]
    feed.put_many(["a", "b", "c"], ids=["m1", "m2", "m3"])
    assert [job.id for job in feed.claim(10)] == ["m1", "m2", "m3"]
    assert client.get("feed.publishes:backlog") == b"3"
    feed.bury("x", "refused", job_id="d1")
    feed.bury("x", "refused again", job_id="d1")
    assert feed.stalled_jobs() == {"d1": "refused"}
