"""The claimed set keeps the claim order, so claims that expire together go back in it."""

from __future__ import annotations

import time

from realtime_glue.jobqueue import JobFeed


def test_the_claimed_set_is_in_claim_order_even_within_one_millisecond(redis_server):
    client = redis_server.client()
    feed = JobFeed(client, "jobs", worker_id="w")
    ids = feed.put_many([f"job {n}" for n in range(50)])
    claimed = [job.id for job in feed.claim(30)] + [job.id for job in feed.claim(20)]
    assert claimed == ids
    # By score, not by id: before, a batch's claims shared one score and sorted by their random ids.
    in_set = [member.decode() for member in client.zrange("feed.claimed:jobs", 0, -1)]
    assert in_set == ids
    scores = [score for _, score in client.zrange("feed.claimed:jobs", 0, -1, withscores=True)]
    assert len(set(scores)) == 50


def test_renewed_claims_keep_their_order_and_expired_ones_go_back_in_it(redis_server):
    client = redis_server.client()
    feed = JobFeed(client, "jobs", worker_id="w")
    ids = feed.put_many([f"job {n}" for n in range(40)])
    first = [job.id for job in feed.claim(10)]
    second = [job.id for job in feed.claim(10)]
    third = [job.id for job in feed.claim(10)]
    # The worker names what it knows it holds; `third`'s reply has not reached it yet.
    assert feed.heartbeat(held=[*second, *first]) == 20
    in_set = [member.decode() for member in client.zrange("feed.claimed:jobs", 0, -1)]
    assert in_set == first + second + third
    assert len({s for _, s in client.zrange("feed.claimed:jobs", 0, -1, withscores=True)}) == 30
    # The worker dies: every claim expires and goes back to the front in claim order.
    time.sleep(0.3)
    assert feed.reclaim_expired(0.2, max_failures=5) == (30, 0)
    assert [job.id for job in feed.claim(40)] == ids
