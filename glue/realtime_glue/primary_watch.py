"""Follows Redis failovers (Sentinel): the glue's connections move to the new primary.

PrimaryWatch asks the sentinels every second. When they name another
primary, it drops every connection of the glue's client, in use or idle,
that is not on the new one, so that nothing more is claimed or finished on
the old primary: each loop of the glue using one gets an error, backs off,
retries and reconnects to the new primary. It
counts the failover (glue_redis_failovers_total) and records it in Redis,
once per configuration epoch, for `realtime-glue status`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis as redis_lib
from redis.sentinel import MasterNotFoundError

from .actor import Actor
from .redis_connection import WATCH_INTERVAL, SentinelAnswer, sentinel_finder
from .supervisor import pause, progress

log = logging.getLogger(__name__)

# Failovers the glue followed: configuration epoch -> {"at", "old", "new"}.
FAILOVERS_KEY = "glue.redis.failovers"


def _address(answer: SentinelAnswer | None) -> str:
    return f"{answer.primary[0]}:{answer.primary[1]}" if answer and answer.primary else "-"


@dataclass
class Failover:
    """A change of primary the glue followed."""

    at: float  # time.time()
    old: str
    new: str
    epoch: int


class PrimaryWatch(Actor):
    def __init__(self, client: redis_lib.Redis, metrics=None, interval: float = WATCH_INTERVAL):
        super().__init__(name="redis primary watch")
        self.client = client
        self.finder = sentinel_finder(client)
        self.metrics = metrics
        self.interval = interval
        self.primary: SentinelAnswer | None = self.finder.current
        self.failovers = 0
        self.last_failover: Failover | None = None
        self._lost_since: float | None = None

    def run(self) -> None:
        while not self.stopping:
            progress()
            self.check_once()
            pause(self.interval)

    def check_once(self) -> None:
        try:
            found = self.finder.find()
        except MasterNotFoundError as exc:
            if self._lost_since is None:
                self._lost_since = time.monotonic()
                log.warning("cannot find the Redis primary: %s; asking again every %gs", exc, self.interval)
            return
        if self._lost_since is not None:
            log.warning(
                "the sentinels name a Redis primary again, %s, after %.1fs",
                _address(found),
                time.monotonic() - self._lost_since,
            )
            self._lost_since = None
        before, self.primary = self.primary, found
        if before is not None and before.primary != found.primary:
            self.follow(before, found)

    def follow(self, before: SentinelAnswer, found: SentinelAnswer) -> None:
        failover = Failover(time.time(), _address(before), _address(found), found.epoch)
        self.failovers += 1
        self.last_failover = failover
        log.warning(
            "Redis failover: the primary is now %s (was %s, epoch %d); reconnecting",
            failover.new,
            failover.old,
            failover.epoch,
        )
        dropped = drop_connections_off(self.client, found.primary)
        log.info("dropped %d connections that were not on the new primary", dropped)
        if self.metrics is not None:
            self.metrics.redis_failovers.inc()
        try:
            record_failover(self.client, failover)
        except redis_lib.RedisError as exc:
            log.info("the failover is not recorded in Redis (%s)", exc)


def drop_connections_off(client: redis_lib.Redis, primary: tuple[str, int]) -> int:
    """Close the client's connections, in use or idle, that are not on `primary`: nothing
    more goes to the old primary. Those already on the new one (made since the sentinels
    named it) are kept: a command in flight there must not lose its reply."""
    pool = client.connection_pool
    dropped = 0
    for connection in [*pool._available_connections, *pool._in_use_connections]:
        if connection._sock is not None and (connection.host, connection.port) != primary:
            connection.disconnect()
            dropped += 1
    return dropped


def record_failover(client: redis_lib.Redis, failover: Failover) -> None:
    """One entry per configuration epoch, by whichever glue saw it first."""
    entry = json.dumps({"at": round(failover.at, 3), "old": failover.old, "new": failover.new})
    client.hsetnx(FAILOVERS_KEY, str(failover.epoch), entry)


def redis_status(client: redis_lib.Redis) -> dict:
    """For `status`: the primary the sentinels name and the last failover a glue followed."""
    finder = sentinel_finder(client)
    if finder is None:
        return {"sentinel": False}
    try:
        found = finder.find()
    except MasterNotFoundError as exc:
        return {"sentinel": True, "service": finder.service, "primary": None, "error": str(exc)}
    last = None
    entries = client.hgetall(FAILOVERS_KEY)
    if entries:
        epoch, entry = max(entries.items(), key=lambda item: int(item[0]))
        last = {"epoch": int(epoch), **json.loads(entry)}
    return {
        "sentinel": True,
        "service": finder.service,
        "primary": _address(found),
        "epoch": found.epoch,
        "last_failover": last,
    }


def describe_primary(status: dict) -> str:
    """redis_status as the line `status` prints."""
    if status["primary"] is None:
        return f"redis: service {status['service']}: NO PRIMARY: {status['error']}"
    line = f"redis: service {status['service']}: primary {status['primary']} (epoch {status['epoch']})"
    last = status["last_failover"]
    if last is None:
        return f"{line}; no failover recorded"
    when = datetime.fromtimestamp(last["at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ago = time.time() - last["at"]
    return f"{line}; last failover {when} ({ago:.0f}s ago): {last['old']} -> {last['new']}"
