"""The message a pipeline passes from stage to stage, and how a stage says no."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Reject(Exception):
    """The job can never be processed as it is: stall it with this reason."""


class TransientFailure(Exception):
    """The job failed for now: return it to the queue with its failure count raised."""


@dataclass
class Message:
    job_id: str
    raw: bytes
    failures: int = 0
    channel: str | None = None
    event: str | None = None
    data: Any = None
    # What browsers receive, set by the format stage.
    body: bytes | None = None
    # The id browsers see (EventSource `id:`), the same on every push node.
    event_id: str | None = None
    # Anything a stage wants to note for a later one (e.g. "encrypted").
    notes: dict[str, Any] = field(default_factory=dict)
