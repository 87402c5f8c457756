"""Readers summed over the push nodes, and what changed since the readers channel was last told.

A browser holds one subscription on one node, so a channel's readers are the sum of
its subscribers on every node. The readers channel itself is never counted: every
page that shows the counts subscribes to it, and counting them would make each page
that opens a change to publish.
"""

from __future__ import annotations


def sum_readers(per_node: dict[str, dict[str, int]], exclude: str = "") -> dict[str, int]:
    """Readers per channel over every node that answered (channels with none left out)."""
    total: dict[str, int] = {}
    for readers in per_node.values():
        for channel, count in readers.items():
            if channel != exclude and count > 0:
                total[channel] = total.get(channel, 0) + count
    return total


def top_channels(readers: dict[str, int], limit: int) -> dict[str, int]:
    """The `limit` channels with the most readers (ties by name, so the choice is stable)."""
    return dict(sorted(readers.items(), key=lambda item: (-item[1], item[0]))[:limit])


class Tally:
    """The counts the readers channel was last told, per channel (0 = no reader)."""

    def __init__(self) -> None:
        self.told: dict[str, int] | None = None

    def changes(self, readers: dict[str, int]) -> dict[str, int]:
        """Channels whose readers differ from what was told: their count now, 0 for a
        channel whose last reader left. Everything, if nothing was told yet."""
        if self.told is None:
            return dict(readers)
        changed = {channel: count for channel, count in readers.items() if self.told.get(channel) != count}
        changed.update({channel: 0 for channel in self.told if channel not in readers})
        return changed

    def told_all(self, readers: dict[str, int]) -> None:
        """The channel now knows these counts (after a full snapshot or the changes)."""
        self.told = dict(readers)

    def forget(self) -> None:
        """Nothing is known to be told (another unit published meanwhile): start with a snapshot."""
        self.told = None
