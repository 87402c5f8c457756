"""The claimed set keeps the claim order, so claims that expire together go back in it."""

from __future__ import annotations

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
