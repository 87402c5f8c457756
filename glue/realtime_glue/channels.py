"""Which channel ids and event ids may be sent to a push node.

Both end up in the publish request (the channel in its request line, the
event id in its Event-ID header) and in what browsers read (the EventSource
`id:` line), so neither may carry CR, LF or anything else that could end a
line or a header early.
"""

from __future__ import annotations

import functools
import re

MAX_CHANNEL_LENGTH = 128
MAX_EVENT_ID_LENGTH = 128
# Visible ASCII: no space, no control character (CR, LF, NUL), nothing a header or a line ends at.
_EVENT_ID = re.compile(r"^[\x21-\x7e]+$")
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
    # A message's channel is checked by several stages, and channels repeat.
    return _string_channel_problem(channel, wildcard_prefix)


@functools.lru_cache(maxsize=16384)
def _string_channel_problem(channel: str, wildcard_prefix: str) -> str | None:
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


def event_id_problem(event_id) -> str | None:
    """Why `event_id` cannot be an Event-ID header and EventSource id, or None when it can."""
    if not isinstance(event_id, str):
        return f"event id must be a string, got {type(event_id).__name__}"
    if not event_id:
        return "event id is empty"
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        return f"event id is {len(event_id)} characters long, the limit is {MAX_EVENT_ID_LENGTH}"
    if not _EVENT_ID.match(event_id):
        return f"event id {event_id!r} has characters other than visible ASCII (no spaces, CR or LF)"
    return None
