"""How the glue reaches Redis: one server by URL, or the primary of a Sentinel service.

With Sentinel (`[redis] sentinels` and `service`), every connection goes to the
node the sentinels name as the primary, and never stays on one they do not:

- The primary is what the sentinels answer; when they disagree, the answer of
  the highest configuration epoch wins (every failover raises the epoch; a
  sentinel cut off from the others may still name the old primary). An
  answer whose sentinel thinks that primary is down is not taken.
- A new connection asks the node it reached for its ROLE and refuses it unless
  it is a primary.
- PrimaryWatch (primary_watch.py) asks the sentinels every second and, when
  the primary changed (a failover), drops every connection, in use or idle,
  that is not on the new primary: a failover is a reconnect, not a restart.
- A command refused with READONLY (the node became a replica) or NOREPLICAS
  (a primary without replicas fences itself: min-replicas-to-write) drops the
  connection, and the next one asks the sentinels again.

What the glue cannot see, Redis fences: an old primary that lost its replicas
refuses writes after min-replicas-max-lag seconds (the redis role sets 10).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, SentinelConnectionPool, SentinelManagedConnection

from .errors import ConfigError

log = logging.getLogger(__name__)

# Seconds a sentinel may take to answer: a dead sentinel host must not hold up
# finding the primary (the others answer in a millisecond).
SENTINEL_TIMEOUT = 1.0
# How often PrimaryWatch (primary_watch.py) asks the sentinels.
WATCH_INTERVAL = 1.0


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class SentinelAnswer:
    """What one sentinel says about the service, or why it said nothing."""

    sentinel: str  # host:port
    primary: tuple[str, int] | None = None
    epoch: int = -1
    flags: str = ""
    error: str = ""

    @property
    def usable(self) -> bool:
        """A primary this sentinel does not think is down."""
        return self.primary is not None and "s_down" not in self.flags and "o_down" not in self.flags


def parse_master_state(reply) -> dict[str, str]:
    """SENTINEL MASTER's reply as a dict: a map (RESP3, redis-py 8's default) or
    a flat list of names and values (RESP2)."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    text = [_text(v) for v in reply]
    return dict(zip(text[0::2], text[1::2], strict=True))


def choose_primary(
    answers: list[SentinelAnswer], prefer: tuple[str, int] | None = None
) -> SentinelAnswer | None:
    """The usable answer of the highest configuration epoch, or None. Between
    different primaries of the same epoch (a sentinel catching up), the one most
    sentinels name, then `prefer` (the one in use: no flapping), wins."""
    usable = [answer for answer in answers if answer.usable]
    if not usable:
        return None
    epoch = max(answer.epoch for answer in usable)
    latest = [answer for answer in usable if answer.epoch == epoch]
    named = {answer.primary: sum(a.primary == answer.primary for a in latest) for answer in latest}
    return max(latest, key=lambda answer: (named[answer.primary], answer.primary == prefer))


def _address(primary: tuple[str, int] | None) -> str:
    return f"{primary[0]}:{primary[1]}" if primary else "-"


class SentinelPrimary:
    """Finds the primary of one Sentinel service. It is the `sentinel_manager`
    of redis-py's SentinelConnectionPool (which calls `discover_master`)."""

    def __init__(self, sentinels: list[tuple[str, int]], service: str, password: str | None):
        self.service = service
        self.addresses = [f"{host}:{port}" for host, port in sentinels]
        self.clients = [
            redis_lib.Redis(
                host=host,
                port=port,
                password=password,
                socket_timeout=SENTINEL_TIMEOUT,
                socket_connect_timeout=SENTINEL_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            for host, port in sentinels
        ]
        # Every sentinel is asked at once, so a dead one costs its timeout only once.
        self._askers = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(sentinels), thread_name_prefix="sentinel"
        )
        # The last primary found and when (monotonic): connections made within
        # WATCH_INTERVAL of an answer take it without asking again.
        self.current: SentinelAnswer | None = None
        self._found_at = 0.0

    def ask(self, address: str, client: redis_lib.Redis) -> SentinelAnswer:
        try:
            state = parse_master_state(client.execute_command("SENTINEL", "MASTER", self.service))
        except redis_lib.RedisError as exc:
            return SentinelAnswer(address, error=f"{type(exc).__name__}: {exc}")
        return SentinelAnswer(
            address,
            primary=(state["ip"], int(state["port"])),
            epoch=int(state.get("config-epoch", 0)),
            flags=state.get("flags", ""),
        )

    def ask_all(self) -> list[SentinelAnswer]:
        futures = [
            self._askers.submit(self.ask, address, client)
            for address, client in zip(self.addresses, self.clients, strict=True)
        ]
        return [future.result() for future in futures]

    def find(self) -> SentinelAnswer:
        """Ask the sentinels now; raises MasterNotFoundError saying what each answered."""
        answers = self.ask_all()
        chosen = choose_primary(answers, prefer=self.current.primary if self.current else None)
        if chosen is None:
            said = "; ".join(
                f"{a.sentinel}: {a.error or f'{_address(a.primary)} flagged {a.flags}'}" for a in answers
            )
            raise MasterNotFoundError(f"no sentinel names a primary for {self.service!r} ({said})")
        self.current, self._found_at = chosen, time.monotonic()
        return chosen

    def forget(self) -> None:
        """The primary we had failed us: the next connection asks the sentinels."""
        self._found_at = 0.0

    # --- what redis-py's SentinelConnectionPool calls ------------------------------
    def discover_master(self, service_name: str) -> tuple[str, int]:
        if self.current is None or time.monotonic() - self._found_at > WATCH_INTERVAL:
            self.find()
        return self.current.primary

    def discover_slaves(self, service_name: str) -> list:
        return []  # the glue reads and writes on the primary only

    def close(self) -> None:
        self._askers.shutdown(wait=False)


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary the sentinels name, fenced: it refuses a node
    that is not a primary, and drops itself on READONLY or NOREPLICAS."""

    def _finder(self) -> SentinelPrimary:
        return self.connection_pool.sentinel_manager

    def connect_to(self, address):
        super().connect_to(address)
        self.send_command("ROLE")
        role = _text(self.read_response()[0])
        if role != "master":
            self.disconnect()
            self._finder().forget()
            raise RedisConnectionError(
                f"{_address(address)} is a {role}, not a primary: the sentinels' answer is out of date"
            )

    def send_packed_command(self, command, check_health=True):
        # A connection kept out of the pool (own_connection.py) reconnects here. redis-py 5+
        # would reconnect to the address it had (connect_check_health), the old primary after
        # a failover; connect() asks the sentinels (redis-py 4 does that itself).
        if not self._sock:
            self.connect()
        return super().send_packed_command(command, check_health)

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not str(exc).startswith("NOREPLICAS"):
                raise
            self.disconnect()
            self._finder().forget()
            raise RedisConnectionError(
                f"{_address((self.host, self.port))} refuses writes without its replicas (fenced): {exc}"
            ) from None
        except RedisConnectionError:
            # Among them redis-py's "The previous master is now a slave" (READONLY).
            self._finder().forget()
            raise


def connect_redis(config) -> redis_lib.Redis:
    """The glue's Redis client: to [redis] url, or to the Sentinel service's primary.

    Commands have a deadline ([redis] timeout) and are not retried by redis-py:
    the glue's own loops retry with their backoff, and redis-py's retries (three,
    seconds apart, by default since redis-py 6) would stack timeouts and hide a
    failover for seconds.
    """
    options = dict(
        password=config.redis_password,
        socket_connect_timeout=config.redis_timeout,
        socket_timeout=config.redis_timeout,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )
    sentinel = config.redis_sentinel
    if sentinel is None:
        return redis_lib.Redis.from_url(config.redis_url, max_connections=None, **options)
    finder = SentinelPrimary(sentinel.sentinels, sentinel.service, sentinel.password)
    pool = SentinelConnectionPool(
        sentinel.service, finder, connection_class=PrimaryConnection, db=sentinel.db, **options
    )
    return redis_lib.Redis(connection_pool=pool)


def sentinel_finder(client: redis_lib.Redis) -> SentinelPrimary | None:
    """The SentinelPrimary behind a client from connect_redis, None for a plain URL."""
    finder = getattr(client.connection_pool, "sentinel_manager", None)
    return finder if isinstance(finder, SentinelPrimary) else None


def check_sentinels(config) -> SentinelAnswer:
    """Ask the configured sentinels once for the primary.

    What a config must fix is a ConfigError naming the key: no sentinel answers
    (`redis.sentinels`), the password is refused (`redis.sentinel_password_file`),
    the service is unknown (`redis.service`). Sentinels that know the service but
    name no working primary (a failover under way, or every node down) raise
    MasterNotFoundError: that passes."""
    sentinel = config.redis_sentinel
    finder = SentinelPrimary(sentinel.sentinels, sentinel.service, sentinel.password)
    try:
        answers = finder.ask_all()
    finally:
        finder.close()
    chosen = choose_primary(answers)
    if chosen is not None:
        return chosen
    said = "; ".join(
        f"{a.sentinel}: {a.error or f'{_address(a.primary)} flagged {a.flags}'}" for a in answers
    )
    errors = [a.error for a in answers]
    if any(a.primary for a in answers):
        raise MasterNotFoundError(f"the sentinels name no working primary for {sentinel.service!r} ({said})")
    if any("AuthenticationError" in e or "NOAUTH" in e or "WRONGPASS" in e for e in errors):
        problem = "a sentinel refused the password" if sentinel.password else "the sentinels want a password"
        raise ConfigError("redis.sentinel_password_file", f"{problem} ({said})")
    if any("No such master" in e for e in errors):
        raise ConfigError(
            "redis.service", f"the sentinels monitor no service named {sentinel.service!r} ({said})"
        )
    raise ConfigError("redis.sentinels", f"no sentinel answered ({said})")


def describe_target(config) -> str:
    """Where the glue's Redis is, for logs and STATUS."""
    sentinel = config.redis_sentinel
    if sentinel is None:
        return config.redis_url
    listed = ", ".join(f"{host}:{port}" for host, port in sentinel.sentinels)
    return f"the primary of {sentinel.service!r} (sentinels {listed})"
