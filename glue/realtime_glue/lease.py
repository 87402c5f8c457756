"""Feed leases: a feed is claimed from by one glue instance at a time.

A feed's partitions are leased (balancer.py), and so is each push node's backlog
feed, whose holder alone drains it (publishers/http.py). The keys:

    feed.lease:<partition>  the holder's token, with a time to live (SET NX PX)
    feed.instances:<feed>   zset instance -> last beat (Redis ms): who shares the partitions

A lease is taken with SET NX PX and a fresh token, renewed by its holder
every heartbeat, released by it when it stops or gives the partition away,
and expires when the holder dies or loses Redis. Every lease operation is
fenced by the token, and so is claiming: the claim script refuses a token
that does not hold the lease (FENCED), so an instance that lost its lease
claims nothing more, even before it notices. Its claims already in flight
are fenced by their own owner (a claim is itself a lease: jobqueue.py), so
it can still finish them, and the next holder waits until they are settled
(`settled()`) before it claims: a channel's messages never overtake each
other across a handover.

The holder also keeps a local deadline (monotonic, from before each renewal
was sent): once it passes without a renewal, it treats the lease as lost
without asking Redis.
"""

from __future__ import annotations

import time
import uuid

from redis.exceptions import ResponseError

from .jobqueue import ClaimedJob, FeedKeys, JobFeed
from .lua_scripts import run_script
from .supervisor import pause


class FeedLease:
    """The right to claim from one feed (a partition, a node's backlog), held with a token."""

    def __init__(self, feed: JobFeed, owner: str, ttl: float, clock=time.monotonic):
        self.feed = feed
        self.redis = feed.redis
        self.keys = feed.keys.named()
        self.owner = owner
        self.ttl = ttl
        self.clock = clock
        self.token: str | None = None
        self.valid_until = 0.0

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    @property
    def held(self) -> bool:
        """Held as far as this process knows: taken or renewed less than a ttl ago."""
        return self.token is not None and self.clock() < self.valid_until

    def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        token = f"{self.owner}/{uuid.uuid4().hex[:8]}"
        sent = self.clock()
        if self.redis.set(self.feed.keys.lease, token, nx=True, px=self.ttl_ms):
            self.token, self.valid_until = token, sent + self.ttl
            return True
        return False

    def renew(self) -> bool:
        """Extend the lease; False (and the lease is forgotten) if the token no longer holds it."""
        if self.token is None:
            return False
        sent = self.clock()
        if run_script(self.redis, "lease_renew", self.keys, [self.token, self.ttl_ms]):
            self.valid_until = sent + self.ttl
            return True
        self.lost()
        return False

    def release(self) -> bool:
        """Give the lease up now, so another instance takes the partition without waiting."""
        if self.token is None:
            return False
        released = bool(run_script(self.redis, "lease_release", self.keys, [self.token]))
        self.lost()
        return released

    def settled(self) -> bool:
        """True once the lease is held and no claim of the partition is in flight."""
        if self.token is None:
            return False
        in_flight = run_script(self.redis, "lease_settled", self.keys, [self.token])
        if in_flight < 0:
            self.lost()
            return False
        return in_flight == 0

    def lost(self) -> None:
        self.token = None
        self.valid_until = 0.0


def lease_holder(redis, feed: str) -> str | None:
    """The instance holding a partition's lease now (its token without the suffix), or None."""
    token = redis.get(FeedKeys(feed).lease)
    if token is None:
        return None
    return token.decode().rpartition("/")[0]


class LeasedFeed(JobFeed):
    """A partition's feed as its lease holder's worker sees it: claims are made under the lease.

    Once the lease is lost, a claim returns nothing (the instance stops the
    worker and gives the partition up); the lease's FENCED refusal from Redis
    is what makes that safe even before this process notices.
    """

    def __init__(self, lease: FeedLease, worker_id: str):
        super().__init__(lease.feed.redis, lease.feed.name, worker_id=worker_id)
        self.lease = lease

    def claim(
        self, count: int = 1, mirror: JobFeed | None = None, wait: float = 0.0, lease_token: str = ""
    ) -> list[ClaimedJob]:
        token = self.lease.token
        if token is None or not self.lease.held:
            if wait > 0:  # jobs may be waiting, but not for us: do not spin on them
                pause(wait)
            return []
        try:
            return super().claim(count, mirror=mirror, wait=wait, lease_token=token)
        except ResponseError as exc:
            if str(exc).startswith("FENCED"):
                self.lease.lost()
                return []
            raise

    def wait_for_jobs(self, timeout: float) -> bool:
        if not self.lease.held:  # jobs may be waiting, but not for us: do not spin on them
            pause(timeout)
            return False
        return super().wait_for_jobs(timeout)


class FeedInstances:
    """The live glue instances sharing a partitioned feed, by their beats in feed.instances."""

    def __init__(self, redis, feed: str, instance: str, ttl: float):
        self.redis = redis
        self.keys = FeedKeys(feed).named()
        self.key = FeedKeys(feed).instances
        self.instance = instance
        self.ttl = ttl

    def beat(self) -> int:
        """This instance is alive; returns how many are, itself included."""
        return int(run_script(self.redis, "instances_beat", self.keys, [self.instance, int(self.ttl * 1000)]))

    def leave(self) -> None:
        self.redis.zrem(self.key, self.instance)

    def live(self) -> list[str]:
        sec, usec = self.redis.time()
        now_ms = sec * 1000 + usec // 1000
        members = self.redis.zrangebyscore(self.key, now_ms - int(self.ttl * 1000), "+inf")
        return sorted(m.decode() for m in members)
