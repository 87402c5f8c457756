"""How long the claim loop waits before its next claim, after one that left slots free.

At everyday rates jobs come one at a time, and every claim costs the glue
the same (a claim round trip, a round of POSTs, a finish, a handful of
greenlet wake-ups) whether it carries one job or ten: at 2,000 msg/s most of
a job's CPU is that per-claim cost. Waiting a little before claiming again
lets the jobs put meanwhile travel together.

The wait is spent only where it buys something: when the recent arrival rate
says at least `MIN_EXPECTED` more jobs come within `longest` (the config's
`[queue] claim_linger`). A lone job, or a trickle, is claimed the moment it is
put (the claim blocks in Redis for it). The wait is as long as `target` jobs
(a full claim) take to arrive at that rate, and never longer than `longest`:
no job waits longer than that for its claim because of it. A claim that
filled every free slot never waits (the worker decides that, not this class).

`longest` trades latency for CPU, and the operator chooses: at 2,000 jobs a
second, 0 costs about three times the CPU per job of the default 3 ms, and
20 ms about half of it, for about 11 ms more at the median (README, "What is
measured").
"""

from __future__ import annotations

import math

# The longest a job waits in the feed because the claim loop lingers (seconds): the default
# of [queue] claim_linger.
LONGEST = 0.003
# The most [queue] claim_linger may be. At 20 ms a claim's cost is mostly shared already (1.4-1.75x
# the saturated CPU per job at 2,000/s), and 50 ms is over three times Disqus' 15 ms end to end.
MAX_LONGEST = 0.05
# The most a claim carries by default ([queue] claim_batch): the wait ends once they are likely in.
TARGET = 64
# Linger only when at least this many jobs are expected within `longest`.
MIN_EXPECTED = 2.0
# How far back the arrival rate looks (seconds; an exponentially decaying count).
RATE_WINDOW = 0.05


class ClaimLinger:
    def __init__(
        self,
        longest: float = LONGEST,
        target: int = TARGET,
        min_expected: float = MIN_EXPECTED,
        window: float = RATE_WINDOW,
    ):
        self.longest = longest
        self.target = target
        self.min_expected = min_expected
        self.window = window
        self._recent = 0.0  # jobs claimed, each weighed by exp(-age / window)
        self._at: float | None = None

    def claimed(self, jobs: int, now: float) -> float:
        """`jobs` were just claimed (at monotonic time `now`); seconds to wait before the next claim."""
        self._recent = self._decayed(now) + jobs
        self._at = now
        if self.longest <= 0:
            return 0.0
        rate = self._recent / self.window
        if rate * self.longest < self.min_expected:
            return 0.0  # a trickle: the next job is claimed as soon as it is put
        return min(self.longest, self.target / rate)

    def _decayed(self, now: float) -> float:
        if self._at is None:
            return 0.0
        return self._recent * math.exp(-max(0.0, now - self._at) / self.window)
