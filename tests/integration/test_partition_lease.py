"""Partition leases against a real redis-server: one holder at a time, expiry, fencing, fair share,
handover in order.

The balancers run in this process (gevent, no monkey-patching), driven round
by round with `balance_once()`; what they open and close is recorded.
"""

from __future__ import annotations

import json

import gevent
import pytest
from redis.exceptions import ResponseError

from realtime_glue.balancer import PartitionBalancer, PartitionState
from realtime_glue.jobqueue import JobFeed
from realtime_glue.lease import FeedLease, LeasedFeed, lease_holder
from realtime_glue.partitions import PartitionedFeed, partition_feed_names, partition_of, record_partitioning
from support.glue_process import wait_until

N = 8


@pytest.fixture
def client(redis_server):
    return redis_server.client()


def lease_for(client, feed="comments.3", owner="a", ttl=60.0):
    return FeedLease(JobFeed(client, feed, worker_id=owner), owner, ttl)


def test_one_holder_at_a_time_until_the_lease_expires(client):
    first, second = lease_for(client, owner="a", ttl=2), lease_for(client, owner="b", ttl=60)
    assert first.acquire()
    assert not second.acquire()
    assert lease_holder(client, "comments.3") == "a"
    # The holder dies (no renewal): the lease expires by itself, then it can be taken.
    wait_until(second.acquire, timeout=15, what="the expired lease to be taken")
    assert lease_holder(client, "comments.3") == "b"


def test_a_stale_holder_is_fenced_from_every_operation(client):
    feed = JobFeed(client, "comments.3")
    ids = feed.put_many([f"job {n}" for n in range(3)])
    stale = lease_for(client, owner="a", ttl=0.2)
    assert stale.acquire()
    stale_token = stale.token
    wait_until(lambda: client.get("feed.lease:comments.3") is None, timeout=5, what="expiry")
    fresh = lease_for(client, owner="b")
    assert fresh.acquire()

    # The stale holder's claim is refused by Redis itself (not only by its own clock) ...
    with pytest.raises(ResponseError, match="FENCED"):
        JobFeed(client, "comments.3", worker_id="a").claim(3, lease_token=stale_token)
    stale.valid_until = float("inf")  # as if its clock had not noticed yet
    assert LeasedFeed(stale, "a").claim(3) == []
    assert stale.token is None  # ... and it learns from the refusal that the lease is gone
    # ... and it can neither renew nor release the new holder's lease.
    stale.token = stale_token
    assert not stale.renew()
    stale.token = stale_token
    assert not stale.release()
    assert lease_holder(client, "comments.3") == "b"

    claimed = LeasedFeed(fresh, "b").claim(3)
    assert [job.id for job in claimed] == ids  # nothing was taken by the stale holder


def test_the_next_holder_waits_until_the_previous_holders_claims_are_settled(client):
    feed = JobFeed(client, "comments.3", worker_id="a")
    ids = feed.put_many([f"job {n}" for n in range(6)])
    old = lease_for(client, owner="a")
    assert old.acquire()
    in_flight = LeasedFeed(old, "a").claim(4)
    assert old.release()  # handed over while 4 claims are in flight

    new = lease_for(client, owner="b")
    assert new.acquire()
    assert not new.settled()
    assert feed.finish([in_flight[0].id, in_flight[1].id]) == 2
    assert not new.settled()
    # The rest are given back (a shutdown) to the front of the queue, in claim order.
    assert feed.release([in_flight[2].id, in_flight[3].id]) == 2
    assert new.settled()
    claimed = LeasedFeed(new, "b").claim(10)
    assert [job.id for job in claimed] == ids[2:]


def test_claims_of_a_dead_holder_settle_once_reclaimed_to_the_front(client):
    feed = JobFeed(client, "comments.3", worker_id="dead")
    ids = feed.put_many([f"job {n}" for n in range(25)])
    dead = lease_for(client, owner="dead", ttl=2)
    assert dead.acquire()
    LeasedFeed(dead, "dead").claim(20)  # in one millisecond: their order is the claimed set's
    wait_until(lambda: client.get("feed.lease:comments.3") is None, timeout=15, what="expiry")
    new = lease_for(client, owner="b")
    assert new.acquire()
    assert not new.settled()
    wait_until(lambda: sum(feed.reclaim_expired(0.2, max_failures=5)) == 20, timeout=5, what="reclaim")
    assert new.settled()
    assert [job.id for job in LeasedFeed(new, "b").claim(30)] == ids


class Recorder:
    """What a balancer asked of its instance: which partitions it processes now."""

    def __init__(self, name: str):
        self.name = name
        self.open: set[str] = set()

    def open_partition(self, feed: LeasedFeed) -> None:
        self.open.add(feed.name)

    def close_partition(self, feed: LeasedFeed) -> None:
        self.open.discard(feed.name)


def balancer(client, name: str, ttl: float = 60.0) -> tuple[PartitionBalancer, Recorder]:
    recorder = Recorder(name)
    return (
        PartitionBalancer(
            client,
            "comments",
            partition_feed_names("comments", N),
            name,
            ttl,
            recorder.open_partition,
            recorder.close_partition,
        ),
        recorder,
    )


def rounds(balancers, count: int = 4) -> None:
    for _ in range(count):
        for b in balancers:
            b.balance_once()
        gevent.sleep(0)  # the closing greenlets run
        gevent.sleep(0)


def assert_shared_fairly(client, pairs) -> None:
    opened = [recorder.open for _, recorder in pairs]
    every = set().union(*opened)
    assert every == set(partition_feed_names("comments", N))
    assert sum(len(o) for o in opened) == N, "a partition is processed by two instances"
    share = -(-N // len(pairs))
    assert all(len(o) <= share for o in opened), [len(o) for o in opened]
    for b, recorder in pairs:
        assert {name for name, _ in b.describe().items()} == recorder.open
        for name in recorder.open:
            assert lease_holder(client, name) == recorder.name


def test_instances_share_the_partitions_fairly_and_make_room_for_a_newcomer(client):
    a = balancer(client, "a")
    rounds([a[0]])
    assert len(a[1].open) == N  # alone, it takes everything
    b, c = balancer(client, "b"), balancer(client, "c")
    rounds([a[0], b[0], c[0]])
    assert_shared_fairly(client, [a, b, c])  # 3 + 3 + 2
    d = balancer(client, "d")
    rounds([a[0], b[0], c[0], d[0]])
    assert_shared_fairly(client, [a, b, c, d])  # 2 each


def test_a_graceful_stop_hands_its_partitions_over_at_once(client):
    # Leases of a minute: only the release lets the others take over within a round.
    a, b = balancer(client, "a", ttl=60), balancer(client, "b", ttl=60)
    rounds([a[0], b[0]])
    assert_shared_fairly(client, [a, b])
    a[0].stop()
    assert a[1].open == set()
    assert client.zscore("feed.instances:comments", "a") is None
    rounds([b[0]], count=2)
    assert_shared_fairly(client, [b])


def test_a_dead_instances_partitions_are_taken_when_its_leases_expire(client):
    a, b = balancer(client, "a", ttl=2), balancer(client, "b", ttl=2)
    rounds([a[0], b[0]])
    assert_shared_fairly(client, [a, b])
    # a dies: it neither renews nor releases.
    wait_until(lambda: (rounds([b[0]], count=1), len(b[1].open) == N)[1], timeout=20, what="b to take all")
    assert_shared_fairly(client, [b])


def test_a_lost_lease_closes_the_partition_without_releasing_the_new_holders(client):
    a = balancer(client, "a", ttl=60)
    rounds([a[0]])
    taken = "comments.5"
    client.set("feed.lease:comments.5", "intruder/0")  # taken over behind its back
    a[0].balance_once()
    gevent.sleep(0)
    assert taken not in a[1].open
    assert client.get("feed.lease:comments.5") == b"intruder/0"
    assert a[0].describe().get(taken) is None


def test_partitioned_producer_and_balanced_consumers_keep_each_channels_order(client):
    producer = PartitionedFeed(client, "comments", N)
    channels = [f"article-{n}" for n in range(20)]
    items = [json.dumps({"channel": c, "event": "e", "data": {"n": n}}) for n in range(10) for c in channels]
    producer.put_many(items)
    for channel in channels:  # each channel's 10 jobs are all on its partition
        held = client.hvals(f"feed.items:comments.{partition_of(channel, N)}")
        assert sum(json.loads(item)["channel"] == channel for item in held) == 10
    (a, _), (b, _) = balancer(client, "a"), balancer(client, "b")
    rounds([a, b])
    seen: dict[str, list[int]] = {}
    for bal in (a, b):
        for partition in bal.held.values():
            assert partition.state is PartitionState.OPEN
            for job in partition.feed.claim(1000):
                envelope = json.loads(job.item)
                seen.setdefault(envelope["channel"], []).append(envelope["data"]["n"])
    assert seen == {c: list(range(10)) for c in channels}


def test_the_number_of_partitions_changes_only_while_the_old_ones_are_empty(client):
    record_partitioning(client, "comments", 8)
    assert client.get("feed.partitioning:comments") == b"8"
    record_partitioning(client, "comments", 8)  # the same number: nothing to check
    PartitionedFeed(client, "comments", 8).put(json.dumps({"channel": "news"}))
    with pytest.raises(ValueError, match=r"read in 8 partition\(s\) \(comments.0, .*1 ready"):
        record_partitioning(client, "comments", 16)
    with pytest.raises(ValueError, match="read in 8 partition"):
        record_partitioning(client, "comments", 1)
    for feed in PartitionedFeed(client, "comments", 8).feeds:
        for job in feed.claim(10):
            feed.finish([job.id])
    record_partitioning(client, "comments", 16)
    assert client.get("feed.partitioning:comments") == b"16"
    record_partitioning(client, "comments", 1)  # back to the plain feed: no key at all
    assert client.get("feed.partitioning:comments") is None


def test_a_plain_feed_with_jobs_is_not_split_under_them(client):
    JobFeed(client, "comments").put("queued before partitions")
    with pytest.raises(ValueError, match=r"read in 1 partition\(s\) \(comments\), which still hold 1 ready"):
        record_partitioning(client, "comments", 4)
    record_partitioning(client, "comments", 1)  # the default never needs the key
    assert client.get("feed.partitioning:comments") is None
