"""The Thoonk job feed in Redis: where jobs are put, claimed, finished, stalled.

Key names and meanings are Thoonk's, so a Thoonk producer and the glue can
share a feed:

    feed.ids:<f>        list of ready ids; LPUSH normal, RPUSH priority, consumed from the right
    feed.items:<f>      hash id -> payload
    feed.published:<f>  zset id -> publish time (ms); a job leaves it when finished or stalled
    feed.claimed:<f>    zset id -> claim time (ms)
    feed.cancelled:<f>  hash id -> failure count
    feed.stalled:<f>    set of stalled ids (the dead-letter)
    feed.publishes:<f>  counter of puts
    feed.finishes:<f>   counter of finishes
    job.finish:<f>      pub/sub channel: "<id>\\0<result>" when a job finishes

The glue adds three keys Thoonk does not read, to close Thoonk's gaps:

    feed.claimedby:<f>     hash id -> worker holding the claim
    feed.workers:<f>       zset worker -> last heartbeat (ms)
    feed.stallreasons:<f>  hash id -> why the job was stalled
    feed.dropped:<f>       hash expired|full -> items trim() dropped (backlogs only)

and, for a partitioned feed (partitions.py, lease.py):

    feed.lease:<partition>  the token of the one instance processing the partition (SET NX PX)
    feed.instances:<f>      zset instance -> last beat (ms): the instances sharing the partitions
    feed.partitioning:<f>   how many partitions <f> is read in (absent: one, the feed itself)

Every operation is one Lua script, so a worker that dies between two commands
leaves each id in exactly one of ids, claimed or stalled.

A claim is a lease: its score in feed.claimed is when its worker last renewed
it (`heartbeat(held=...)` renews the claims the worker really holds). One not
renewed for the visibility timeout is returned by `reclaim_expired`, whether
its worker died or only lost track of it. finish, cancel, release and stall
act only on claims the calling worker still holds (feed.claimedby), so a
worker whose claim was reclaimed cannot finish or requeue another's job.
"""

from __future__ import annotations

import copy
import enum
import os
import socket
import uuid
from dataclasses import dataclass

from redis.exceptions import NoScriptError

from .errors import PutNotReplicated
from .lua_scripts import lua_script, lua_source, run_script
from .own_connection import OwnConnection, command, packed


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobState(enum.Enum):
    """Where a job is. A finished (or retracted) job is nowhere: its state is None."""

    READY = "ready"  # in feed.ids, waiting to be claimed
    CLAIMED = "claimed"  # in feed.claimed, held by a worker
    STALLED = "stalled"  # in feed.stalled, the dead-letter, with its reason


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    item: bytes
    failures: int


@dataclass(frozen=True)
class FeedKeys:
    """The Redis key names of one Thoonk job feed."""

    feed: str

    @property
    def ids(self) -> str:
        return f"feed.ids:{self.feed}"

    @property
    def items(self) -> str:
        return f"feed.items:{self.feed}"

    @property
    def published(self) -> str:
        return f"feed.published:{self.feed}"

    @property
    def claimed(self) -> str:
        return f"feed.claimed:{self.feed}"

    @property
    def cancelled(self) -> str:
        return f"feed.cancelled:{self.feed}"

    @property
    def stalled(self) -> str:
        return f"feed.stalled:{self.feed}"

    @property
    def publishes(self) -> str:
        return f"feed.publishes:{self.feed}"

    @property
    def finishes(self) -> str:
        return f"feed.finishes:{self.feed}"

    @property
    def finish_channel(self) -> str:
        return f"job.finish:{self.feed}"

    @property
    def claimedby(self) -> str:
        return f"feed.claimedby:{self.feed}"

    @property
    def workers(self) -> str:
        return f"feed.workers:{self.feed}"

    @property
    def lease(self) -> str:
        return f"feed.lease:{self.feed}"

    @property
    def instances(self) -> str:
        return f"feed.instances:{self.feed}"

    @property
    def partitioning(self) -> str:
        return f"feed.partitioning:{self.feed}"

    @property
    def stallreasons(self) -> str:
        return f"feed.stallreasons:{self.feed}"

    @property
    def dropped(self) -> str:
        return f"feed.dropped:{self.feed}"

    def named(self, prefix: str = "") -> dict[str, str]:
        """Every key by the name the Lua scripts give it (`prefix` + name)."""
        names = [n for n in dir(type(self)) if isinstance(getattr(type(self), n), property)]
        return {prefix + name: getattr(self, name) for name in names}


class JobFeed:
    """One Thoonk job feed. All methods are single atomic round trips."""

    def __init__(
        self,
        redis,
        feed: str,
        worker_id: str | None = None,
        durable_replicas: int = 1,
        durable_timeout: float = 2.0,
    ):
        self.redis = redis
        self.name = feed
        self.keys = FeedKeys(feed)
        self.worker_id = worker_id or new_worker_id()
        # A durable put is acknowledged once this many replicas have it (WAIT).
        self.durable_replicas = durable_replicas
        self.durable_timeout = durable_timeout
        # A script without a mirror never touches its mirror_* keys.
        self._named_keys = {**self.keys.named(), **self.keys.named("mirror_")}
        # With a connection of its own (with_own_connection), claims and finishes take the
        # fast path: commands packed once, written at once.
        self._own: OwnConnection | None = None
        self._packed_heads: dict[tuple[str, str | None], tuple[int, bytes]] = {}
        # A finish written ahead of the next call over the own connection (finish_ahead), and
        # its reply once that call was made.
        self._ahead = b""
        self._ahead_reply = None

    def with_own_connection(self) -> JobFeed:
        """This feed, for this worker, over a Redis connection of its own (own_connection.py):
        for one loop's claims or finishes, the hot path at every rate. One greenlet at a time.
        A copy, so a subclass (a partition's LeasedFeed) keeps claiming under its lease."""
        feed = copy.copy(self)
        feed._own = OwnConnection(self.redis)
        feed._packed_heads = {}
        return feed

    def release_connection(self) -> None:
        """Give the connection of its own back to the pool (the loop using it has ended)."""
        if self._own is not None:
            self._own.close()

    def _run(
        self, script: str, args: list, client=None, mirror: JobFeed | None = None, preloaded: bool = False
    ):
        if self._own is not None and client is None:
            return self._run_own(script, args, mirror)
        return run_script(self.redis, script, self._keys(mirror), args, client=client, preloaded=preloaded)

    def _keys(self, mirror: JobFeed | None) -> dict[str, str]:
        return self._named_keys if mirror is None else {**self._named_keys, **mirror.keys.named("mirror_")}

    def _packed_script(self, script: str, args: list, mirror: JobFeed | None = None) -> bytes:
        cached = (script, mirror.name if mirror is not None else None)
        head = self._packed_heads.get(cached)
        if head is None:
            keys = self._keys(mirror)
            ordered = [keys[key] for key in lua_source(script).key_names]
            head = command("EVALSHA", lua_script(self.redis, script).sha, len(ordered), *ordered)
            self._packed_heads[cached] = head
        return packed(head, *args)

    def _run_own(self, script: str, args: list, mirror: JobFeed | None = None, before: bytes = b""):
        """Run a script over this feed's own connection, after the one command `before` in
        the same write (and a finish sent ahead, if any); returns the script's reply."""
        call = self._packed_script(script, args, mirror)
        ahead, self._ahead = self._ahead, b""
        replies = self._own.call(
            ahead + before + call, 1 + bool(ahead) + bool(before), errors_as_replies=True
        )
        if ahead:
            self._ahead_reply = replies[0]
            if isinstance(self._ahead_reply, NoScriptError):  # Redis lost its scripts: load, run alone
                self.redis.script_load(lua_source("finish").text)
                self._ahead_reply = self._own.call(ahead, 1, errors_as_replies=True)[0]
        reply = replies[-1]
        if before and isinstance(replies[-2], Exception) and not isinstance(reply, NoScriptError):
            raise replies[-2]
        if isinstance(reply, NoScriptError):  # Redis lost its scripts (a restart): load it, run it alone
            self.redis.script_load(lua_source(script).text)
            return self._own.call(call, 1)[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    # --- producing -----------------------------------------------------------
    def put(
        self, item: bytes | str, priority: bool = False, job_id: str | None = None, durable: bool = False
    ) -> str:
        """Queue a job; returns its id. `durable`: see put_many."""
        if durable:
            return self.put_many([item], priority, ids=None if job_id is None else [job_id], durable=True)[0]
        job_id = job_id or uuid.uuid4().hex
        self._run("put", [job_id, item, "1" if priority else "0", "0"])
        return job_id

    def put_many(self, items, priority: bool = False, ids=None, durable: bool = False) -> list[str]:
        """Put several jobs in one round trip (one script call each, pipelined).

        With `ids`, an id the feed already holds is not put again: putting the
        same batch twice (a retry after a lost reply) puts it once.

        `durable`: return only once `durable_replicas` replicas have the puts
        (WAIT on the same connection, at most `durable_timeout` seconds); fewer
        raise PutNotReplicated (the jobs are queued, but may not survive a
        failover). Any other error leaves it unknown whether they were queued:
        put them again with the same ids.
        """
        new_ids = ids is None
        ids = [uuid.uuid4().hex for _ in items] if new_ids else list(ids)
        pipe = self.redis.pipeline(transaction=False)
        for job_id, item in zip(ids, items, strict=True):
            args = [job_id, item, "1" if priority else "0", "0" if new_ids else "1"]
            self._run("put", args, client=pipe)
        if durable:
            pipe.execute_command("WAIT", self.durable_replicas, int(self.durable_timeout * 1000))
        replies = pipe.execute()
        if durable and int(replies[-1]) < self.durable_replicas:
            raise PutNotReplicated(
                self.name, ids, int(replies[-1]), self.durable_replicas, self.durable_timeout
            )
        return ids

    def bury(self, item: bytes | str, reason: str, job_id: str | None = None) -> str:
        """Put an item straight into the dead-letter with the reason (never queued); an id
        the feed already holds is not buried again."""
        job_id = job_id or uuid.uuid4().hex
        self._run("bury", [job_id, item, reason])
        return job_id

    def trim(self, max_age: float, max_length: int) -> tuple[int, int]:
        """Drop the oldest ready items older than `max_age` seconds, then beyond
        `max_length`; returns (expired, over the length). Counted in feed.dropped."""
        expired, full = self._run("trim", [int(max_age * 1000), max_length])
        return int(expired), int(full)

    def dropped_counts(self) -> dict[str, int]:
        counts = self.redis.hgetall(self.keys.dropped)
        return {reason: int(counts.get(reason.encode(), 0)) for reason in ("expired", "full")}

    # --- consuming -----------------------------------------------------------
    def claim(
        self, count: int = 1, mirror: JobFeed | None = None, wait: float = 0.0, lease_token: str = ""
    ) -> list[ClaimedJob]:
        """Claim up to `count` ready jobs for this worker, oldest first.

        With `mirror`, each claimed job is also put on the mirror feed in the
        same step (a shadow pipeline reads that feed).

        With `wait` (seconds), a claim that finds no job ready blocks until one
        is put, up to `wait`, in the same round trip: a BLMOVE of feed.ids' tail
        back onto its tail (the list is left as it was: the id stays ready) and
        the claim script behind it in one pipeline, which Redis runs the moment
        the BLMOVE returns. An id still leaves feed.ids only through the claim
        script, so a Thoonk consumer shares the feed as before. [] if nothing
        came (or another worker took it first).

        With `lease_token`, the claim is made only while feed.lease holds that
        token, else Redis answers an error starting with FENCED (lease.py).
        """
        args = [self.worker_id, count, "1" if mirror is not None else "0", lease_token]
        if wait <= 0:
            flat = self._run("claim", args, mirror=mirror)
        elif self._own is not None:
            flat = self._run_own("claim", args, mirror, before=self._packed_blmove(wait))
        else:
            pipe = self.redis.pipeline(transaction=False)
            pipe.blmove(self.keys.ids, self.keys.ids, wait, "RIGHT", "RIGHT")
            self._run("claim", args, client=pipe, mirror=mirror, preloaded=True)
            try:
                _, flat = pipe.execute()
            except NoScriptError:  # Redis lost its scripts (a restart): load and claim again
                flat = self._run("claim", args, mirror=mirror)
        return [ClaimedJob(_text(flat[i]), flat[i + 1], int(flat[i + 2])) for i in range(0, len(flat), 3)]

    def adopt(self, held, count: int) -> list[ClaimedJob]:
        """This worker's claims it does not hold (`held`: the ids it does), oldest first, up to
        `count`: claims Redis made whose reply was lost. Taken up before anything newer, they
        keep their place in each channel's order."""
        flat = self._run("adopt", [self.worker_id, count, *held])
        return [ClaimedJob(_text(flat[i]), flat[i + 1], int(flat[i + 2])) for i in range(0, len(flat), 3)]

    def _packed_blmove(self, wait: float) -> bytes:
        head = self._packed_heads.get(("BLMOVE", None))
        if head is None:
            head = command("BLMOVE", self.keys.ids, self.keys.ids, "RIGHT", "RIGHT")
            self._packed_heads[("BLMOVE", None)] = head
        return packed(head, wait)

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block until the feed has a ready id (or timeout); claims nothing.

        BLMOVE from the tail back onto the tail leaves the list as it was, so
        the id stays in feed.ids while we wait.
        """
        moved = self.redis.blmove(self.keys.ids, self.keys.ids, timeout, "RIGHT", "RIGHT")
        return moved is not None

    def heartbeat(self, held=()) -> int:
        """This worker is alive; renew the lease of each claim it holds (ids in `held`).

        Returns how many of them it still held. A claim that is not renewed
        expires after the visibility timeout and is reclaimed.
        """
        return self._run("heartbeat", [self.worker_id, *held])

    def leave(self) -> None:
        """Forget this worker (after its claims were finished or released)."""
        self.redis.zrem(self.keys.workers, self.worker_id)

    def finish(self, job_ids, results=None, notify: bool = False) -> int:
        """Finish a batch of this worker's claimed jobs; returns how many it still held."""
        job_ids = list(job_ids)
        if not job_ids:
            return 0
        results = results or [""] * len(job_ids)
        args = [self.worker_id, "1" if notify else "0"]
        for job_id, result in zip(job_ids, results, strict=True):
            args += [job_id, result]
        return self._run("finish", args)

    def finish_ahead(self, job_ids, results=None, notify: bool = False) -> None:
        """Write this finish ahead of the next call over the feed's own connection (a claim),
        in the same write: one round trip for both. `finished_ahead()` then tells how many
        of the jobs it still held, or None if it was not written (that call was not made or
        failed): the caller finishes them again."""
        job_ids = list(job_ids)
        results = results or [""] * len(job_ids)
        args = [self.worker_id, "1" if notify else "0"]
        for job_id, result in zip(job_ids, results, strict=True):
            args += [job_id, result]
        self._ahead = self._packed_script("finish", args)
        self._ahead_reply = None

    def finished_ahead(self) -> int | None:
        """What the finish sent ahead answered: how many jobs it still held, or None."""
        reply, self._ahead_reply, self._ahead = self._ahead_reply, None, b""
        return reply if isinstance(reply, int) else None

    def cancel(self, job_ids, count_failure: bool = True) -> int:
        """Return this worker's claims to the front of the queue, in the order given
        (a failure unless count_failure=False); returns how many it still held."""
        job_ids = list(job_ids)
        if not job_ids:
            return 0
        return self._run("cancel", [self.worker_id, "1" if count_failure else "0", *job_ids])

    def release(self, job_ids) -> int:
        """Give jobs back untried (shutdown): they keep their place, no failure counted."""
        return self.cancel(job_ids, count_failure=False)

    def stall(self, job_id: str, reason: str) -> bool:
        """Move this worker's claim to the dead-letter with the reason; False if not held."""
        return bool(self._run("stall", [self.worker_id, job_id, reason]))

    def retry(self, job_id: str) -> bool:
        return bool(self._run("retry", [job_id]))

    def retract(self, job_id: str) -> bool:
        return bool(self._run("retract", [job_id]))

    def reclaim_expired(
        self, visibility_timeout: float, max_failures: int, limit: int = 1000
    ) -> tuple[int, int]:
        """Requeue (or stall) every claim whose lease expired; returns (requeued, stalled).

        Works through them `limit` at a time (one script call each), so no
        number of expired claims is too many.
        """
        total_requeued = total_stalled = 0
        while True:
            requeued, stalled = self._run("reclaim", [int(visibility_timeout * 1000), max_failures, limit])
            total_requeued += int(requeued)
            total_stalled += int(stalled)
            if int(requeued) + int(stalled) < limit:
                return total_requeued, total_stalled

    # --- inspecting ----------------------------------------------------------
    def stalled_jobs(self) -> dict[str, str]:
        """Stalled ids with the reason each was stalled."""
        ids = sorted(_text(i) for i in self.redis.smembers(self.keys.stalled))
        if not ids:
            return {}
        reasons = self.redis.hmget(self.keys.stallreasons, ids)
        return {
            i: _text(r) if r is not None else "(no reason recorded)"
            for i, r in zip(ids, reasons, strict=True)
        }

    def state(self, job_id: str) -> JobState | None:
        """Where the job is now; None once it is finished or retracted."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(self.keys.claimed, job_id)
        pipe.sismember(self.keys.stalled, job_id)
        pipe.lpos(self.keys.ids, job_id)
        claimed, stalled, ready = pipe.execute()
        if claimed is not None:
            return JobState.CLAIMED
        if stalled:
            return JobState.STALLED
        return JobState.READY if ready is not None else None

    def count_by_state(self) -> dict[JobState, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.keys.ids)
        pipe.zcard(self.keys.claimed)
        pipe.scard(self.keys.stalled)
        ready, claimed, stalled = pipe.execute()
        return {JobState.READY: ready, JobState.CLAIMED: claimed, JobState.STALLED: stalled}

    def item(self, job_id: str) -> bytes | None:
        return self.redis.hget(self.keys.items, job_id)

    def unfinished_before(self, before_ms: int) -> list[str]:
        """End-to-end ack: ids published before `before_ms` and not yet finished."""
        return [_text(i) for i in self.redis.zrangebyscore(self.keys.published, "-inf", before_ms)]

    def oldest_unfinished_age(self) -> float | None:
        """Seconds since the oldest unfinished job was published, or None."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(self.keys.published, 0, 0, withscores=True)
        pipe.time()
        oldest, (sec, usec) = pipe.execute()
        if not oldest:
            return None
        return max(0.0, (sec * 1000 + usec / 1000 - oldest[0][1]) / 1000)

    def counts(self) -> dict[str, int]:
        """Jobs per state (keyed by JobState values), unfinished, counters and live workers."""
        k = self.keys
        by_state = self.count_by_state()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(k.published)
        pipe.get(k.publishes)
        pipe.get(k.finishes)
        pipe.zcount(k.workers, _redis_now_ms(self.redis) - 60_000, "+inf")
        unfinished, publishes, finishes, workers = pipe.execute()
        return {
            **{state.value: count for state, count in by_state.items()},
            "unfinished": unfinished,
            "publishes": int(publishes or 0),
            "finishes": int(finishes or 0),
            "workers": workers,
        }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_now_ms(redis) -> int:
    sec, usec = redis.time()
    return sec * 1000 + usec // 1000
