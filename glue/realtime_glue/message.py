"""The message a pipeline passes from stage to stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
