"""Signed subscribe URLs: what lets a browser read a private channel.

A push node lets a subscriber onto a private channel (one whose name matches
the operator's naming rule, e.g. the prefix `private-`) only with a URL this
module signed. The node checks it by itself, with no request to the
application (nginx/push-stream.conf's check, the other half of this
contract):

    /ev/private-ada?exp=1767225600&kid=app-1&sig=<43 characters>[&tr=ev]

    exp  expiry, Unix seconds
    kid  the id of the key that signed it (every key of the set is accepted,
         so two overlap during a rotation)
    tr   optional: the one transport (ev, ws, lp, sub) the URL is good for
    sig  base64url without padding of HMAC-SHA256(key,
         "realtime-glue subscribe v1\\n" + channel + "\\n" + exp + "\\n" + tr)

The signature stays in the query string: push-stream reads `/` and a `.b<N>`
suffix in the channel path, so nothing may be added there.

The key set is one JSON file that the application (or the glue host) and
every push node hold, mode 0600:

    {"keys": {"app-1": {"secret": "<base64, 32 bytes or more>"},
              "firehose-acme": {"secret": "...", "channels": ["firehose-acme"]}},
     "scoped_prefixes": ["firehose-"]}

A key with `channels` signs only those channels. A channel under one of the
`scoped_prefixes` can be signed only by a key that lists it, so the
application's keys cannot open it: removing a firehose customer's key revokes
that customer and no one else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .channels import channel_problem
from .errors import ConfigError, SigningError
from .keyfile import read_private_file

CONTEXT = "realtime-glue subscribe v1"
# The subscriber locations of nginx/push-stream.conf: EventSource, WebSocket,
# long-polling, streaming.
TRANSPORTS = ("ev", "ws", "lp", "sub")
MIN_SECRET_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def signature(secret: bytes, channel: str, expires: int, transport: str = "") -> str:
    """The `sig` of a URL for `channel` until `expires`, bound to `transport` if not empty."""
    signed = f"{CONTEXT}\n{channel}\n{expires}\n{transport}".encode()
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_secret() -> bytes:
    return os.urandom(MIN_SECRET_BYTES)


def is_private(channel: str, private_prefixes: list[str] | tuple[str, ...]) -> bool:
    """Whether the nodes ask for a signature for `channel` (the operator's naming rule)."""
    return any(channel.startswith(prefix) for prefix in private_prefixes)


@dataclass(frozen=True)
class SubscribeKey:
    id: str
    secret: bytes
    # The only channels this key may sign; None: any channel outside the scoped prefixes.
    channels: tuple[str, ...] | None = None

    def entry(self) -> dict:
        """This key as the key set file holds it."""
        entry = {"secret": base64.b64encode(self.secret).decode()}
        if self.channels is not None:
            entry["channels"] = list(self.channels)
        return entry


@dataclass
class KeySet:
    keys: dict[str, SubscribeKey]
    scoped_prefixes: tuple[str, ...] = ()
    path: str = "<key set>"

    def document(self) -> str:
        """The key set file's text (what the nodes' check reads at start and reload)."""
        return json.dumps(
            {
                "keys": {key.id: key.entry() for key in self.keys.values()},
                "scoped_prefixes": list(self.scoped_prefixes),
            },
            indent=2,
        )

    def may_sign(self, key: SubscribeKey, channel: str) -> bool:
        """The nodes' rule: a scoped key its channels only; an unscoped key any channel
        outside the scoped prefixes."""
        if key.channels is not None:
            return channel in key.channels
        return not any(channel.startswith(prefix) for prefix in self.scoped_prefixes)

    def key_for(self, channel: str, key_id: str = "") -> SubscribeKey:
        """The key that signs `channel`: one scoped to it first (a firehose customer's),
        else `key_id`, else the only unscoped key. SigningError says why there is none."""
        scoped = [key for key in self.keys.values() if key.channels is not None and channel in key.channels]
        if scoped:
            return next((key for key in scoped if key.id == key_id), scoped[0])
        if any(channel.startswith(prefix) for prefix in self.scoped_prefixes):
            raise SigningError(
                f"channel {channel!r} can only be signed with a key scoped to it, and no key in"
                f" {self.path} lists it (a firehose customer that was removed?)"
            )
        if key_id:
            key = self.keys.get(key_id)
            if key is None:
                known = ", ".join(sorted(self.keys)) or "none"
                raise SigningError(f"no key {key_id!r} in {self.path} (keys: {known})")
            if not self.may_sign(key, channel):
                raise SigningError(f"key {key_id!r} is scoped to {', '.join(key.channels)}, not {channel!r}")
            return key
        unscoped = [key for key in self.keys.values() if key.channels is None]
        if len(unscoped) != 1:
            ids = ", ".join(key.id for key in unscoped) or "none"
            raise SigningError(
                f"{len(unscoped)} unscoped keys in {self.path} ({ids}): name the one that signs"
                " (subscribe.key_id, or --key-id)"
            )
        return unscoped[0]


@dataclass(frozen=True)
class SignedSubscription:
    """A channel's signature: the query string every transport's URL carries."""

    channel: str
    expires: int
    key_id: str
    # The transport the signature is bound to, "" for any.
    transport: str
    query: str

    def path(self, transport: str = "") -> str:
        transport = transport or self.transport or "ev"
        if self.transport and transport != self.transport:
            raise SigningError(f"this signature is bound to transport {self.transport!r}, not {transport!r}")
        return f"/{transport}/{self.channel}?{self.query}"

    def url(self, base_url: str = "", transport: str = "") -> str:
        """The URL a browser subscribes with: `base_url` (the nodes' public address; the
        same on every node, so the browser keeps it across a failover) plus the path.
        WebSocket URLs get ws:// or wss://."""
        path = self.path(transport)
        if not base_url:
            return path
        parts = urlsplit(base_url)
        scheme = parts.scheme
        if path.startswith("/ws/"):
            scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path.split("?")[0], self.query, ""))

    def urls(self, base_url: str = "") -> dict[str, str]:
        """One URL per transport this signature is good for."""
        transports = (self.transport,) if self.transport else TRANSPORTS
        return {transport: self.url(base_url, transport) for transport in transports}


def sign(
    keys: KeySet,
    channel: str,
    ttl: int,
    transport: str = "",
    key_id: str = "",
    now: float | None = None,
) -> SignedSubscription:
    """Sign `channel` for `ttl` seconds from now, bound to `transport` if given."""
    problem = channel_problem(channel, wildcard_prefix="")
    if problem:
        raise SigningError(problem)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
        raise SigningError(f"ttl must be a whole number of seconds >= 1, got {ttl!r}")
    if transport and transport not in TRANSPORTS:
        raise SigningError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    key = keys.key_for(channel, key_id)
    expires = int(now if now is not None else time.time()) + ttl
    sig = signature(key.secret, channel, expires, transport)
    query = f"exp={expires}&kid={key.id}" + (f"&tr={transport}" if transport else "") + f"&sig={sig}"
    return SignedSubscription(channel, expires, key.id, transport, query)


# --- the key set file -----------------------------------------------------------------


def load_key_set(path: str, where: str = "subscribe.keys_file") -> KeySet:
    """The key set in `path`, which only its owner may read; ConfigError names `where`."""
    return parse_key_set(read_private_file(path, where), path, where)


def parse_key_set(raw: bytes, path: str = "<key set>", where: str = "subscribe.keys_file") -> KeySet:
    def fail(problem: str) -> ConfigError:
        return ConfigError(where, f"key set {path}: {problem}")

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise fail("expected a JSON object with `keys`")
    unknown = sorted(set(data) - {"keys", "scoped_prefixes"})
    if unknown:
        raise fail(f"unknown field {unknown[0]!r} (known: keys, scoped_prefixes)")
    entries = data.get("keys", {})
    if not isinstance(entries, dict):
        raise fail("`keys` must be an object: key id -> {secret, channels}")
    prefixes = data.get("scoped_prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        raise fail("`scoped_prefixes` must be a list of non-empty strings")
    keys = {}
    for key_id, entry in entries.items():
        keys[key_id] = _key(key_id, entry, fail)
    return KeySet(keys, tuple(prefixes), path)


def _key(key_id: str, entry, fail) -> SubscribeKey:
    if not _KEY_ID.match(key_id):
        raise fail(f"key id {key_id!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
    if not isinstance(entry, dict) or not isinstance(entry.get("secret"), str):
        raise fail(f"key {key_id!r} must be an object with a base64 `secret`")
    unknown = sorted(set(entry) - {"secret", "channels"})
    if unknown:
        raise fail(f"key {key_id!r}: unknown field {unknown[0]!r} (known: secret, channels)")
    try:
        secret = base64.b64decode(entry["secret"], validate=True)
    except ValueError:
        raise fail(f"key {key_id!r}: `secret` is not base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise fail(f"key {key_id!r}: the secret has {len(secret)} bytes, at least {MIN_SECRET_BYTES} needed")
    channels = entry.get("channels")
    if channels is not None:
        if not isinstance(channels, list) or not channels:
            raise fail(f"key {key_id!r}: `channels` must be a non-empty list of channel names")
        for channel in channels:
            problem = channel_problem(channel, wildcard_prefix="")
            if problem:
                raise fail(f"key {key_id!r}: {problem}")
        channels = tuple(channels)
    return SubscribeKey(key_id, secret, channels)
