"""Keeps the glue honest with systemd: a part that dies takes the process down, and a part
stuck in one step stops the watchdog pings.

Every long-lived loop (the claim loop, the finisher, the heartbeat, the
reclaimer, each push node's sender, each connection writer) is spawned here. If
one ends while the glue is not stopping, whatever the reason, the process
stops with a non-zero exit status so systemd restarts it: nothing keeps
running with a piece missing.

Each part, and each batch going through the pipeline, reports progress: a
part is busy unless it waits by choice (`idle()`: an empty inbox, a backoff
sleep between retries, the pause between heartbeats), and every step it
takes (`progress()`) restarts its clock. A part busy without progress for
longer than `progress_timeout` is stuck: the watchdog pings stop, STATUS
names the part, and systemd restarts the glue after WatchdogSec. Waiting
for Redis or a push node with retries is progress (each attempt ends); a
call that never returns is not.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gevent

log = logging.getLogger(__name__)

# EX_SOFTWARE (sysexits.h): a part of the glue died; systemd restarts it.
EXIT_PART_DIED = 70


class Part:
    """One loop or batch of the glue as the watchdog sees it."""

    def __init__(self, name: str, clock: Callable[[], float]):
        self.name = name
        self.clock = clock
        self.busy = True
        self.since = clock()
        self.greenlet: gevent.Greenlet | None = None

    def progress(self) -> None:
        self.since = self.clock()

    def stuck_for(self) -> float:
        """Seconds busy without progress (0 while idle by choice)."""
        return self.clock() - self.since if self.busy else 0.0

    def where(self) -> str:
        """The line the part is at, for the log."""
        frame = getattr(self.greenlet, "gr_frame", None)
        if frame is None:
            return "(not running)"
        return traceback.format_stack(frame, limit=1)[0].strip().replace("\n", " ")


# The part each running greenlet belongs to (progress() and idle() find theirs here); an
# entry is removed when its greenlet leaves the part (Supervisor.track).
_parts: dict[gevent.Greenlet, Part] = {}


def _current() -> Part | None:
    return _parts.get(gevent.getcurrent())


def progress() -> None:
    """The current part took a step."""
    part = _parts.get(gevent.getcurrent())
    if part is not None:
        part.since = part.clock()


class idle:  # used as a function: `with idle():`
    """The current part waits by choice (an inbox, a backoff, an interval): never stuck.

    A class rather than a generator-based context manager: the glue enters it
    several times per job.
    """

    __slots__ = ("part",)

    def __enter__(self) -> None:
        part = _parts.get(gevent.getcurrent())
        if part is None or not part.busy:
            self.part = None
            return
        part.busy = False
        self.part = part

    def __exit__(self, *exc) -> None:
        part = self.part
        if part is not None:
            part.busy = True
            part.since = part.clock()


def pause(seconds: float) -> None:
    """Sleep as a wait by choice (between retries, between rounds)."""
    with idle():
        gevent.sleep(seconds)


class Supervisor:
    def __init__(
        self,
        progress_timeout: float = 60.0,
        on_death: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.progress_timeout = progress_timeout
        self.on_death = on_death
        self.clock = clock
        self.parts: set[Part] = set()
        self.stopping = False
        # Why the glue stops on its own (a part died), or None.
        self.failure: str | None = None

    def spawn(self, name: str, run: Callable, *args, told_to_stop: Callable[[], bool] | None = None):
        """Start a long-lived part: if it ever ends while the glue is not stopping, the glue stops.

        `told_to_stop` says whether the part itself was asked to stop (a partition's
        worker when the partition is handed over): then it may end while the glue runs.
        """
        return gevent.spawn(self._run_part, name, run, told_to_stop, *args)

    def _run_part(self, name: str, run: Callable, told_to_stop, *args) -> None:
        with self.track(name):
            try:
                run(*args)
            except gevent.GreenletExit:
                return  # stopped on purpose (killed)
            except BaseException as exc:
                if not self.stopping and not (told_to_stop and told_to_stop()):
                    log.critical("%s died: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
                    self._died(f"{name} died: {type(exc).__name__}: {exc}")
                raise
        if not self.stopping and not (told_to_stop and told_to_stop()):
            log.critical("%s ended although the glue is not stopping", name)
            self._died(f"{name} ended")

    def _died(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
            if self.on_death is not None:
                self.on_death(why)

    @contextmanager
    def track(self, name: str) -> Iterator[Part]:
        """Watch the current greenlet as a part while inside (a batch, or a long-lived loop)."""
        part = Part(name, self.clock)
        part.greenlet = gevent.getcurrent()
        _parts[part.greenlet] = part
        self.parts.add(part)
        try:
            yield part
        finally:
            self.parts.discard(part)
            _parts.pop(part.greenlet, None)

    def stuck(self) -> list[Part]:
        return [p for p in self.parts if p.stuck_for() > self.progress_timeout]

    def health(self) -> str | None:
        """None while every part makes progress or waits by choice; else what is stuck."""
        if self.failure is not None:
            return self.failure
        stuck = sorted(self.stuck(), key=lambda p: -p.stuck_for())
        if not stuck:
            return None
        return "; ".join(f"{p.name} stuck for {p.stuck_for():.0f}s at {p.where()}" for p in stuck)


def spawn_part(
    supervisor: Supervisor | None,
    name: str,
    run: Callable,
    *args,
    told_to_stop: Callable[[], bool] | None = None,
) -> gevent.Greenlet:
    """Start a long-lived part under `supervisor`, or as a plain greenlet without one (tests, CLI)."""
    if supervisor is None:
        return gevent.spawn(run, *args)
    return supervisor.spawn(name, run, *args, told_to_stop=told_to_stop)


@contextmanager
def tracked(supervisor: Supervisor | None, name: str) -> Iterator[None]:
    """Watch the current greenlet as a short-lived part (a batch), if there is a supervisor."""
    if supervisor is None:
        yield
        return
    with supervisor.track(name):
        yield
