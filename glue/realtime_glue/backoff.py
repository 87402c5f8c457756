"""How long to wait before trying again: the one rule every retry loop of the glue
(Redis, push nodes, backlogs) follows.

Exponential from `base` up to `cap`, with equal jitter (half the delay fixed,
half random: redis-py's EqualJitterBackoff), so processes that lost the same
server do not retry in step. The exponent stops growing once the cap is
reached, so a loop can fail any number of times in a row: an outage of days
is as safe as one of seconds.
"""

from __future__ import annotations

import math

from redis.backoff import EqualJitterBackoff


def _max_exponent(base: float, cap: float) -> int:
    """The first exponent at which base * 2**n reaches the cap."""
    return max(0, math.ceil(math.log2(cap / base))) if 0 < base < cap else 0


def backoff_delay(attempt: int, base: float = 0.05, cap: float = 5.0) -> float:
    """Seconds to wait after `attempt` failures in a row (0 for the first retry)."""
    return EqualJitterBackoff(cap=cap, base=base).compute(min(attempt, _max_exponent(base, cap)))


class Backoff:
    """The attempt counter of one retry loop."""

    def __init__(self, base: float = 0.05, cap: float = 5.0):
        self.base = base
        self.cap = cap
        self.attempts = 0

    def failed(self) -> float:
        """Count a failure; returns the seconds to wait before the next attempt."""
        delay = backoff_delay(self.attempts, self.base, self.cap)
        self.attempts += 1
        return delay

    def succeeded(self) -> None:
        self.attempts = 0
