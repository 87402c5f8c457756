"""How long to wait before trying again: capped exponential backoff, the one rule
every retry loop of the glue (Redis, push nodes, backlogs) follows."""


def backoff_delay(attempt: int, base: float = 0.05, cap: float = 5.0) -> float:
    """Seconds to wait after `attempt` failures in a row (0 for the first retry)."""
    return min(cap, base * 2**attempt)
