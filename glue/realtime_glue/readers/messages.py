"""The messages on the readers channel, each small enough for the push nodes.

A message has the shape the format stage gives every message, so a page reads it
like any other: `{"id", "channel", "event": "readers", "data"}`, with

    data.readers   {channel: readers now}; 0 = its last reader left
    data.full      true: a snapshot, every channel with readers; false: only the changes
    data.snapshot  the snapshot's id (full only): a snapshot larger than the nodes'
                   message size comes in parts, and a channel named in none of them
                   has no reader
    data.part, data.parts    this part's number (from 1) and how many there are
    data.total     readers over every channel; data.channels: channels with readers
    data.nodes, data.answered   push nodes asked, and those counted (a node that
                   did not answer in time counts nothing this round)
    data.at        when the round was taken (unix seconds)

Counts are absolute, never increments: a repeated or reordered message sets the
same numbers again, and a missed one is repaired by the next snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

EVENT = "readers"


@dataclass(frozen=True)
class Round:
    """What one round of statistics found, beside the counts."""

    at: float
    nodes: int
    answered: int
    total: int
    channels: int


def _encode(event_id: str, channel: str, data: dict) -> bytes:
    body = {"id": event_id, "channel": channel, "event": EVENT, "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def readers_messages(
    readers: dict[str, int],
    *,
    full: bool,
    channel: str,
    found: Round,
    serial: str,
    max_size: int,
) -> list[tuple[str, bytes]]:
    """(event id, body) of each message carrying `readers`, in order; none for no change.
    `serial` names this round's messages (their ids are `<serial>-<part>`)."""
    if not readers and not full:
        return []

    def data(part: int, parts: int, entries: dict[str, int]) -> dict:
        fields = {"readers": entries, "full": full}
        if full:
            fields["snapshot"] = serial
        fields.update(
            part=part,
            parts=parts,
            total=found.total,
            channels=found.channels,
            nodes=found.nodes,
            answered=found.answered,
            at=int(found.at),
        )
        return fields

    # What a part costs besides its entries, with room for the largest numbers.
    room = max_size - len(_encode(f"{serial}-999999", channel, data(999999, 999999, {})))
    groups: list[dict[str, int]] = [{}]
    used = 0
    for name in sorted(readers):
        # "name":count, as the compact JSON writes it
        size = len(json.dumps(name, ensure_ascii=False).encode()) + len(str(readers[name])) + 2
        if size > room:
            raise ValueError(f"max_size {max_size} leaves no room for one entry")
        if used + size > room and groups[-1]:
            groups.append({})
            used = 0
        groups[-1][name] = readers[name]
        used += size
    return [
        (f"{serial}-{part}", _encode(f"{serial}-{part}", channel, data(part, len(groups), entries)))
        for part, entries in enumerate(groups, start=1)
    ]
