"""This instance's fair share of a partitioned feed: which partitions it processes.

Every round (a second, or a third of the lease's time to live if shorter) the balancer

1. beats in feed.instances and counts the live instances;
2. renews each lease it holds; a partition whose lease is lost (expired, taken
   over, or not renewed within its ttl by this process's own clock) is closed
   at once: its worker claims no more and settles what it holds;
3. opens each held partition whose claims are settled (the previous holder's
   finished, given back, or reclaimed to the front of the queue), and only
   then does its worker claim: a channel's next message never overtakes one
   still in flight elsewhere;
4. gives back what it holds above its share, ceil(N / live instances): the
   partition's worker stops (claims in flight finish, the rest go back to
   the front of the queue, in order), then the lease is released, so the
   next holder can start at once;
5. takes free partitions up to its share, looking from a place of its own
   (crc32 of its instance id), so instances starting together do not all
   reach for partition 0.

A new instance takes nothing in its first round: by its second, the others
have counted it and give back what is above their new share.
"""

from __future__ import annotations

import enum
import logging
import math
import time
import zlib
from collections.abc import Callable

import gevent

from .jobqueue import JobFeed
from .lease import FeedInstances, FeedLease, LeasedFeed
from .supervisor import Supervisor, pause, progress, spawn_part

log = logging.getLogger(__name__)


def fair_share(partitions: int, live_instances: int) -> int:
    """The most partitions one instance holds: ceil(N / live instances)."""
    return math.ceil(partitions / max(1, live_instances))


class PartitionState(enum.Enum):
    WAITING = "waiting"  # leased; the previous holder's claims are not all settled yet
    OPEN = "open"  # leased and claimed from
    LEAVING = "leaving"  # its worker is stopping; the lease is released after


class Partition:
    """One partition this instance holds."""

    def __init__(self, index: int, lease: FeedLease, feed: LeasedFeed):
        self.index = index
        self.lease = lease
        self.feed = feed
        self.state = PartitionState.WAITING
        self.closing: gevent.Greenlet | None = None

    @property
    def name(self) -> str:
        return self.feed.name


class PartitionBalancer:
    """Holds this instance's share of a feed's partitions and hands them over cleanly.

    `open_partition(feed)` starts claiming from a partition (its LeasedFeed);
    `close_partition(feed)` stops that and returns once every claim this
    instance held on it is settled (finished, stalled or given back).
    """

    def __init__(
        self,
        redis,
        feed: str,
        partition_names: list[str],
        instance: str,
        ttl: float,
        open_partition: Callable[[LeasedFeed], None],
        close_partition: Callable[[LeasedFeed], None],
        interval: float | None = None,
        clock=time.monotonic,
    ):
        self.redis = redis
        self.feed = feed
        self.partition_names = partition_names
        self.instance = instance
        self.ttl = ttl
        self.open_partition = open_partition
        self.close_partition = close_partition
        # Rounds are cheap (a beat and one renewal per partition held): short ones let a
        # partition given up or released be taken at once.
        self.interval = interval if interval is not None else min(1.0, max(0.05, ttl / 3))
        self.clock = clock
        self.instances = FeedInstances(redis, feed, instance, ttl)
        self.held: dict[int, Partition] = {}
        self.rounds = 0
        self.live = 1
        self.stopping = False
        self.greenlet: gevent.Greenlet | None = None
        # Where this instance starts looking for free partitions.
        self.start_at = zlib.crc32(instance.encode()) % len(partition_names)

    # --- what the rest of the glue reads ---------------------------------------------

    def share(self) -> int:
        return fair_share(len(self.partition_names), self.live)

    def describe(self) -> dict[str, str]:
        """Each partition this instance holds, with its state."""
        return {p.name: p.state.value for _, p in sorted(self.held.items())}

    # --- one round ----------------------------------------------------------------------

    def balance_once(self) -> None:
        self.live = self.instances.beat()
        self.rounds += 1
        self._renew()
        self._open_settled()
        keeping = [p for p in self.held.values() if p.state is not PartitionState.LEAVING]
        share = self.share()
        if len(keeping) > share:
            self._give_back(keeping, len(keeping) - share)
        elif len(keeping) < share and self.rounds > 1 and not self.stopping:
            self._take(share - len(keeping))

    def _renew(self) -> None:
        for partition in list(self.held.values()):
            if partition.lease.token is None:
                continue  # lost earlier; its close is under way
            try:
                renewed = partition.lease.renew()
            except Exception as exc:
                log.warning("cannot renew the lease of %s (%s)", partition.name, exc)
                renewed = partition.lease.held  # still ours until its local deadline
                if not renewed:
                    partition.lease.lost()
            if not renewed:
                log.warning("lost the lease of %s: another instance may process it now", partition.name)
                self._close(partition, release=False)

    def _open_settled(self) -> None:
        for partition in list(self.held.values()):
            if partition.state is not PartitionState.WAITING:
                continue
            if partition.lease.settled():
                partition.state = PartitionState.OPEN
                log.info("processing partition %s", partition.name)
                self.open_partition(partition.feed)
            elif partition.lease.token is None:
                self._close(partition, release=False)

    def _give_back(self, keeping: list[Partition], count: int) -> None:
        # Waiting ones first (nothing of theirs is in flight here), then the highest.
        order = sorted(keeping, key=lambda p: (p.state is PartitionState.OPEN, -p.index))
        for partition in order[:count]:
            log.info(
                "giving partition %s back: %d live instances share %d partitions, at most %d each",
                partition.name,
                self.live,
                len(self.partition_names),
                self.share(),
            )
            self._close(partition, release=True)

    def _take(self, count: int) -> None:
        count_total = len(self.partition_names)
        candidates = [
            (self.start_at + step) % count_total
            for step in range(count_total)
            if (self.start_at + step) % count_total not in self.held
        ]
        if not candidates:
            return
        pipe = self.redis.pipeline(transaction=False)
        for index in candidates:
            pipe.exists(JobFeed(self.redis, self.partition_names[index]).keys.lease)
        taken = pipe.execute()
        for index, exists in zip(candidates, taken, strict=True):
            if count == 0:
                break
            if exists:
                continue
            feed = JobFeed(self.redis, self.partition_names[index], worker_id=self.instance)
            lease = FeedLease(feed, self.instance, self.ttl, clock=self.clock)
            if lease.acquire():
                partition = Partition(index, lease, LeasedFeed(lease, self.instance))
                self.held[index] = partition
                count -= 1
                log.info("took partition %s (share %d of %d live)", partition.name, self.share(), self.live)
        self._open_settled()

    def _close(self, partition: Partition, release: bool) -> None:
        """Stop claiming from the partition; once its claims are settled, release the lease."""
        if partition.state is PartitionState.LEAVING:
            return
        was_open = partition.state is PartitionState.OPEN
        partition.state = PartitionState.LEAVING
        partition.closing = gevent.spawn(self._closing, partition, was_open, release)

    def _closing(self, partition: Partition, was_open: bool, release: bool) -> None:
        try:
            if was_open:
                self.close_partition(partition.feed)
            if release and partition.lease.token is not None:
                partition.lease.release()
                log.info("released partition %s", partition.name)
        except Exception as exc:
            # Not released: the lease expires within its ttl and the next holder waits for it.
            log.warning("giving back partition %s failed (%s); its lease will expire", partition.name, exc)
            partition.lease.lost()
        finally:
            if self.held.get(partition.index) is partition:
                del self.held[partition.index]

    # --- running ------------------------------------------------------------------------

    def run(self) -> None:
        while not self.stopping:
            progress()
            try:
                self.balance_once()
            except Exception as exc:
                log.warning("balancing the partitions of %s failed: %s", self.feed, exc)
                for partition in list(self.held.values()):
                    if partition.lease.token is not None and not partition.lease.held:
                        log.warning("the lease of %s ran out while Redis was away", partition.name)
                        partition.lease.lost()
                        self._close(partition, release=False)
            pause(self.interval)

    def start(self, supervisor: Supervisor | None = None) -> PartitionBalancer:
        self.greenlet = spawn_part(
            supervisor, f"partition balancer of {self.feed}", self.run, told_to_stop=lambda: self.stopping
        )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Close every partition (claims in flight finish, the rest go back), release the leases,
        leave the instances: the others take the partitions over at their next round."""
        self.stopping = True
        if self.greenlet is not None:
            self.greenlet.join(timeout=self.interval + 5)  # ends after its round
            self.greenlet.kill(block=True, timeout=1)
        for partition in list(self.held.values()):
            self._close(partition, release=True)
        closing = [p.closing for p in list(self.held.values()) if p.closing is not None]
        gevent.joinall(closing, timeout=timeout)
        try:
            self.instances.leave()
        except Exception as exc:
            log.warning("cannot leave the instances of %s (%s); it expires", self.feed, exc)
