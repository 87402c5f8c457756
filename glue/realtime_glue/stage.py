"""What a stage is: the base class every stage and publisher derives from.

A stage does one thing to a Message. It is built once per pipeline from its
options (a table in the config named after the stage) and then called for
every message. `process` returns the message, raises Reject (stall the job
with a reason) or TransientFailure (retry later).

This module imports no stage: stages and publishers import it, and only
registry.py imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .message import Message

_MISSING = object()


@dataclass
class StageContext:
    """What a stage may use beyond its options."""

    pipeline: str
    redis: Any = None
    worker_id: str = ""
    metrics: Any = None
    # The process's Supervisor (long-lived greenlets are started under it), or None.
    supervisor: Any = None


class Stage:
    name = "stage"

    def __init__(self, options: dict | None, context: StageContext):
        self._options = dict(options or {})
        self._known: set[str] = set()
        self.context = context
        self.configure()
        unknown = sorted(set(self._options) - self._known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown option of stage {self.name!r}")

    def configure(self) -> None:
        """Read options with self.option(); called once."""

    def option(self, key: str, kind, default=_MISSING, check=None, hint: str = ""):
        self._known.add(key)
        if key not in self._options:
            if default is _MISSING:
                raise ConfigError(key, f"required by stage {self.name!r}")
            return default
        value = self._options[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(key, f"expected {expected}, got {value!r}")
        if check is not None and not check(value):
            raise ConfigError(key, f"{hint or 'invalid value'} (got {value!r})")
        return value

    def string_list(self, key: str, default=()) -> list[str]:
        value = self.option(key, list, list(default))
        if not all(isinstance(v, str) and v for v in value):
            raise ConfigError(key, f"expected a list of non-empty strings, got {value!r}")
        return value

    def process(self, message: Message) -> Message:
        raise NotImplementedError

    def status(self) -> dict:
        """What `realtime-glue status` shows for this stage (e.g. backlogs per node)."""
        return {}

    def partition_taken(self) -> None:
        """This instance is about to claim from a partition another instance may have held:
        what that one left behind for this stage (a node's backlog) must go first."""

    def close(self) -> None:
        """Release what the stage holds (files, connections)."""
