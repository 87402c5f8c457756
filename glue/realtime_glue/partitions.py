"""Partitioned feeds: a pipeline reads N Thoonk job feeds, and a channel always uses the same one.

A feed `comments` with 8 partitions is the eight job feeds `comments.0` ...
`comments.7`, each an ordinary Thoonk feed (Thoonk's tools work on each one).
A job goes to partition

    crc32(UTF-8 bytes of its channel) mod N

(CRC-32 as zlib, PNG and Ethernet compute it, unsigned), so every job of a
channel is on one partition, and one glue instance at a time processes a
partition (lease.py): a channel's messages reach every push node in one order
however many instances run. A producer in another language computes the same
(Go `crc32.ChecksumIEEE`, PHP `crc32`, Ruby `Zlib.crc32`, Java
`java.util.zip.CRC32`, Node `zlib.crc32`); `realtime-glue enqueue` and
PartitionedFeed do it for Python. With one partition (the default) the feed
is the feed itself, under its own name, as before partitions existed.
"""

from __future__ import annotations

import json
import zlib

from .errors import PutNotReplicated
from .jobqueue import FeedKeys, JobFeed
from .lease import lease_holder


def partition_of(channel: str, partitions: int) -> int:
    """The partition a channel's jobs go to: crc32 of its UTF-8 bytes mod `partitions`."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return zlib.crc32(channel.encode("utf-8")) % partitions


def partition_feed_names(feed: str, partitions: int) -> list[str]:
    """The Thoonk feed names of a feed's partitions: `feed` itself for one, else feed.0 ... feed.N-1."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if partitions == 1:
        return [feed]
    return [f"{feed}.{n}" for n in range(partitions)]


def job_channel(item: bytes | str) -> str:
    """The channel a job payload names (its JSON envelope's `channel`)."""
    try:
        envelope = json.loads(item)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the job is not JSON, so it names no channel to partition by: {exc}") from None
    channel = envelope.get("channel") if isinstance(envelope, dict) else None
    if not isinstance(channel, str) or not channel:
        raise ValueError('the job names no channel to partition by (expected {"channel": "...", ...})')
    return channel


class PartitionedFeed:
    """A feed in partitions as producers and operators see it: puts each job on its channel's
    partition; counts, stalled jobs and retries over all of them."""

    def __init__(self, redis, feed: str, partitions: int = 1, **feed_options):
        """`feed_options` go to each partition's JobFeed (durable_replicas, durable_timeout)."""
        self.redis = redis
        self.name = feed
        self.partitions = partitions
        self.feeds = [JobFeed(redis, name, **feed_options) for name in partition_feed_names(feed, partitions)]

    def feed_for(self, channel: str) -> JobFeed:
        return self.feeds[partition_of(channel, self.partitions)]

    def put(self, item: bytes | str, channel: str | None = None, **put_options) -> str:
        """Put a job on its channel's partition (read from the payload when not given).

        `put_options` go to JobFeed.put as they are (priority, job_id, ...).
        """
        if self.partitions == 1:
            return self.feeds[0].put(item, **put_options)
        return self.feed_for(channel or job_channel(item)).put(item, **put_options)

    def put_many(self, items, channels=None, **put_options) -> list[str]:
        """Put several jobs, one round trip per partition they go to; ids in the order given.

        Each partition gets its jobs in the order given, so a channel's jobs keep theirs.
        """
        items = list(items)
        if self.partitions == 1:
            return self.feeds[0].put_many(items, **put_options)
        channels = list(channels) if channels is not None else [job_channel(item) for item in items]
        by_partition: dict[int, list[int]] = {}
        for index, channel in enumerate(channels):
            by_partition.setdefault(partition_of(channel, self.partitions), []).append(index)
        ids: list[str | None] = [None] * len(items)
        short: list[PutNotReplicated] = []
        for partition, indexes in by_partition.items():
            try:
                put = self.feeds[partition].put_many([items[i] for i in indexes], **put_options)
            except PutNotReplicated as exc:  # queued all the same: put the other partitions' jobs too
                short.append(exc)
                put = exc.job_ids
            for index, job_id in zip(indexes, put, strict=True):
                ids[index] = job_id
        if short:
            # Every job is queued; say so for all of them (which partition fell short is no help).
            first = short[0]
            acknowledged = min(exc.acknowledged for exc in short)
            raise PutNotReplicated(self.name, ids, acknowledged, first.wanted, first.timeout)
        return ids

    # --- looking at it as a whole ---------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """JobFeed.counts summed over the partitions; `workers`: the distinct live ones."""
        total: dict[str, int] = {}
        for feed in self.feeds:
            for key, value in feed.counts().items():
                total[key] = total.get(key, 0) + value
        if self.partitions > 1:
            sec, _ = self.redis.time()
            pipe = self.redis.pipeline(transaction=False)
            for feed in self.feeds:
                pipe.zrangebyscore(feed.keys.workers, (sec - 60) * 1000, "+inf")
            total["workers"] = len(set().union(*(set(members) for members in pipe.execute())))
        return total

    def oldest_unfinished_age(self) -> float | None:
        ages = [age for age in (feed.oldest_unfinished_age() for feed in self.feeds) if age is not None]
        return max(ages) if ages else None

    def partition_status(self) -> list[dict]:
        """Each partition's depth and the instance holding its lease (None: nobody)."""
        rows = []
        for feed in self.feeds:
            by_state = feed.count_by_state()
            rows.append(
                {
                    "feed": feed.name,
                    "holder": lease_holder(self.redis, feed.name),
                    **{state.value: count for state, count in by_state.items()},
                }
            )
        return rows

    def stalled_jobs(self) -> dict[str, str]:
        stalled: dict[str, str] = {}
        for feed in self.feeds:
            stalled.update(feed.stalled_jobs())
        return stalled

    def retry(self, job_id: str) -> bool:
        """Put a stalled job back on the partition that holds it."""
        return any(feed.retry(job_id) for feed in self.feeds)


def record_partitioning(redis, feed: str, partitions: int) -> None:
    """Record how many partitions `feed` is read in; refuse a different number while the
    partitions of the number recorded hold jobs (ValueError, saying where they are).

    A channel's partition depends on the number, so jobs queued under the old
    number would be left where no instance reads them, or read beside the new
    jobs of their channel, out of order. One partition is the feed itself: its
    number is recorded only by the key's absence, so a plain feed gets no new key.
    """
    key = FeedKeys(feed).partitioning
    recorded = int(redis.get(key) or 1)
    if recorded != partitions:
        old = PartitionedFeed(redis, feed, recorded)
        counts = old.counts()
        if counts["ready"] or counts["claimed"]:
            names = ", ".join(f.name for f in old.feeds)
            raise ValueError(
                f"feed {feed!r} is read in {recorded} partition(s) ({names}), which still hold"
                f" {counts['ready']} ready and {counts['claimed']} claimed jobs: a channel's partition"
                f" depends on the number, so change it only once they are empty (or use a new feed name)"
            )
    if partitions == 1:
        redis.delete(key)
    else:
        redis.set(key, partitions)
