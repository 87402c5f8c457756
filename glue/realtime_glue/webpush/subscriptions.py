"""Browsers' push subscriptions: checked when they arrive, kept per user in Redis.

A PushSubscription is `{endpoint, keys: {p256dh, auth}}`: the push service URL
to POST to, the browser's P-256 public key and its 16-byte auth secret. An
endpoint must be https on a host of a known push service (the glue POSTs
wherever a subscription points, so an unchecked endpoint would let anyone
with a token make it call internal addresses); the keys must be what RFC 8291
needs; and the whole is small.

In Redis, per user (keys shared by every webpush pipeline of the database):

    webpush.subscriptions:<user>  hash  subscription id -> JSON {endpoint, p256dh, auth, created_ms}
    webpush.subscribed:<user>     zset  subscription id -> when it was (re)registered, ms
    webpush.threads:<user>        set   threads (channels) the user asked to be notified about

A user keeps at most `max_per_user` subscriptions (one per browser or
device); registering one more drops the oldest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import GlueError
from .base64url import b64url_decode, b64url_encode
from .ece import AUTH_SECRET_BYTES, PUBLIC_KEY_BYTES, load_public_key

log = logging.getLogger(__name__)

# The push services of today's browsers: Chrome (FCM), Firefox (Mozilla
# autopush), Safari (Apple), Edge (WNS). "*.x" matches any subdomain of x.
DEFAULT_ENDPOINT_HOSTS = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)
MAX_ENDPOINT_LENGTH = 2048
MAX_SUBSCRIPTION_BYTES = 4096
_VISIBLE_ASCII = re.compile(r"[!-~]+")
DEFAULT_MAX_PER_USER = 10

_ADD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local dropped = {}
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[4]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('HDEL', KEYS[1], oldest)
  table.insert(dropped, oldest)
end
return dropped
"""


class InvalidSubscription(GlueError, ValueError):
    pass


@functools.lru_cache(maxsize=65536)
def endpoint_origin(endpoint: str) -> str:
    """scheme://host[:port] of an endpoint: the VAPID audience, and what a backlog is kept per."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


def host_allowed(host: str, patterns) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: bytes
    auth: bytes
    created_ms: int = 0

    @property
    def id(self) -> str:
        return subscription_id(self.endpoint)

    @property
    def origin(self) -> str:
        return endpoint_origin(self.endpoint)

    def to_json(self) -> str:
        return json.dumps(
            {
                "endpoint": self.endpoint,
                "p256dh": b64url_encode(self.p256dh),
                "auth": b64url_encode(self.auth),
                "created_ms": self.created_ms,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Subscription:
        record = json.loads(text)
        return cls(
            record["endpoint"],
            b64url_decode(record["p256dh"]),
            b64url_decode(record["auth"]),
            int(record.get("created_ms", 0)),
        )

    def as_push_subscription(self) -> dict:
        """The browser's own JSON form (PushSubscription.toJSON())."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url_encode(self.p256dh), "auth": b64url_encode(self.auth)},
        }


def subscription_id(endpoint: str) -> str:
    return b64url_encode(hashlib.sha256(endpoint.encode()).digest()[:16])


def endpoint_problem(endpoint, endpoint_hosts) -> str | None:
    """Why the glue must not POST to `endpoint`, or None."""
    if not isinstance(endpoint, str) or not endpoint:
        return "endpoint must be a non-empty string"
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        return f"endpoint is {len(endpoint)} characters long, the limit is {MAX_ENDPOINT_LENGTH}"
    if not _VISIBLE_ASCII.fullmatch(endpoint):
        return "endpoint must be a URL without spaces, control or non-ASCII characters"
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        return f"endpoint is not a URL: {exc}"
    if parts.scheme != "https":
        return f"endpoint must be https, got {parts.scheme or 'no scheme'}"
    if not parts.hostname:
        return "endpoint has no host"
    if "@" in parts.netloc:
        return "endpoint must not carry user information"
    if parts.fragment:
        return "endpoint must not have a fragment"
    if not host_allowed(parts.hostname, endpoint_hosts):
        return f"endpoint host {parts.hostname} is not a known push service (webpush.endpoint_hosts)"
    return None


def parse_subscription(data, endpoint_hosts=DEFAULT_ENDPOINT_HOSTS, created_ms: int = 0) -> Subscription:
    """A Subscription from a browser's PushSubscription JSON; InvalidSubscription says what is wrong."""
    if not isinstance(data, dict):
        raise InvalidSubscription(f"expected a PushSubscription object, got {type(data).__name__}")
    if len(json.dumps(data)) > MAX_SUBSCRIPTION_BYTES:
        raise InvalidSubscription(f"subscription is over {MAX_SUBSCRIPTION_BYTES} bytes")
    endpoint = data.get("endpoint")
    problem = endpoint_problem(endpoint, endpoint_hosts)
    if problem:
        raise InvalidSubscription(problem)
    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise InvalidSubscription("keys must be an object with p256dh and auth")
    decoded = {}
    for name, size in (("p256dh", PUBLIC_KEY_BYTES), ("auth", AUTH_SECRET_BYTES)):
        value = keys.get(name)
        if not isinstance(value, str):
            raise InvalidSubscription(f"keys.{name} must be a base64url string")
        try:
            raw = b64url_decode(value)
        except ValueError as exc:
            raise InvalidSubscription(f"keys.{name}: {exc}") from None
        if len(raw) != size:
            raise InvalidSubscription(f"keys.{name} must be {size} bytes, got {len(raw)}")
        decoded[name] = raw
    try:
        load_public_key(decoded["p256dh"])
    except ValueError as exc:
        raise InvalidSubscription(f"keys.p256dh is not a P-256 public key: {exc}") from None
    return Subscription(endpoint, decoded["p256dh"], decoded["auth"], created_ms)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SubscriptionStore:
    """Every user's subscriptions and followed threads, in Redis."""

    def __init__(self, redis, max_per_user: int = DEFAULT_MAX_PER_USER):
        self.redis = redis
        self.max_per_user = max_per_user
        self._add = redis.register_script(_ADD)

    @staticmethod
    def keys(user: str) -> tuple[str, str, str]:
        return f"webpush.subscriptions:{user}", f"webpush.subscribed:{user}", f"webpush.threads:{user}"

    def add(self, user: str, subscription: Subscription) -> list[str]:
        """Store (or renew) a subscription; returns the ids of older ones dropped over the limit."""
        hash_key, order_key, _ = self.keys(user)
        dropped = self._add(
            keys=[hash_key, order_key],
            args=[subscription.id, subscription.to_json(), subscription.created_ms, self.max_per_user],
        )
        return [_text(d) for d in dropped]

    def remove(self, user: str, subscription_id: str) -> bool:
        hash_key, order_key, _ = self.keys(user)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(hash_key, subscription_id)
        pipe.zrem(order_key, subscription_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def for_user(self, user: str) -> list[Subscription]:
        return self.for_users([user])[user]

    def for_users(self, users: list[str]) -> dict[str, list[Subscription]]:
        """Each user's subscriptions, oldest first, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            pipe.hgetall(self.keys(user)[0])
        found: dict[str, list[Subscription]] = {}
        for user, records in zip(users, pipe.execute(), strict=True):
            subscriptions = []
            for sub_id, text in records.items():
                try:
                    subscriptions.append(Subscription.from_json(text))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("user %s: unreadable subscription %s skipped: %s", user, _text(sub_id), exc)
            found[user] = sorted(subscriptions, key=lambda s: s.created_ms)
        return found

    def follow(self, user: str, thread: str) -> None:
        self.redis.sadd(self.keys(user)[2], thread)

    def unfollow(self, user: str, thread: str) -> bool:
        return bool(self.redis.srem(self.keys(user)[2], thread))

    def threads(self, user: str) -> list[str]:
        return sorted(_text(t) for t in self.redis.smembers(self.keys(user)[2]))

    def following(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """For each (user, thread): does the user follow the thread? One round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for user, thread in pairs:
            pipe.sismember(self.keys(user)[2], thread)
        return [bool(v) for v in pipe.execute()]

    def users(self) -> list[str]:
        prefix = "webpush.subscriptions:"
        return sorted(_text(k)[len(prefix) :] for k in self.redis.scan_iter(match=f"{prefix}*", count=500))
