"""Which channel ids may be published to a push node."""

from __future__ import annotations

import re

MAX_CHANNEL_LENGTH = 128
_ALLOWED = re.compile(r"^[A-Za-z0-9_\-:@.=]+$")
# push-stream reads a trailing ".b<N>" in a subscriber path as "backtrack N messages".
_BACKTRACK_SUFFIX = re.compile(r"\.b\d+$")
# Names push-stream gives a meaning of its own (statistics of all channels).
_RESERVED = {"ALL"}
DEFAULT_WILDCARD_PREFIX = "broad_"


def channel_problem(channel, wildcard_prefix: str = DEFAULT_WILDCARD_PREFIX) -> str | None:
    """Why `channel` cannot be used as a channel id, or None when it can."""
    if not isinstance(channel, str):
        return f"channel must be a string, got {type(channel).__name__}"
    if not channel:
        return "channel is empty"
    if len(channel) > MAX_CHANNEL_LENGTH:
        return f"channel is {len(channel)} characters long, the limit is {MAX_CHANNEL_LENGTH}"
    if not _ALLOWED.match(channel):
        bad = sorted({c for c in channel if not _ALLOWED.match(c)})
        return f"channel {channel!r} has characters outside [A-Za-z0-9_-:@.=]: {''.join(bad)!r}"
    if channel in _RESERVED:
        return f"channel {channel!r} is reserved by push-stream"
    if _BACKTRACK_SUFFIX.search(channel):
        return f"channel {channel!r} ends like push-stream's backtrack suffix .b<N>"
    if wildcard_prefix and channel.startswith(wildcard_prefix):
        return f"channel {channel!r} starts with the wildcard prefix {wildcard_prefix!r}"
    return None
