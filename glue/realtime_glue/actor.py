"""A minimal actor on gevent: one greenlet, one inbox, messages handled in order."""

from __future__ import annotations

import gevent
from gevent.queue import Empty, Queue

from .supervisor import Supervisor, idle, progress, spawn_part

_STOP = object()


class Actor:
    """Subclasses either override `receive(message)` (and get an inbox loop) or `run()`."""

    def __init__(self, name: str | None = None, inbox_size: int | None = None):
        self.name = name or type(self).__name__
        self.inbox: Queue = Queue(maxsize=inbox_size)
        self.greenlet: gevent.Greenlet | None = None
        self.stopping = False

    def start(self, supervisor: Supervisor | None = None) -> Actor:
        """Run the actor; under a supervisor, its death stops the glue and its progress is watched."""
        self.greenlet = spawn_part(supervisor, self.name, self._main, told_to_stop=lambda: self.stopping)
        return self

    def send(self, message) -> None:
        """Queue a message; blocks while a bounded inbox is full (backpressure)."""
        self.inbox.put(message)

    def stop(self, timeout: float | None = 5.0) -> None:
        self.stopping = True
        if self.greenlet is None:
            return
        if type(self).run is Actor.run:
            # An inbox actor handles what it was sent before it stops.
            self.inbox.put(_STOP)
            self.greenlet.join(timeout)
        if not self.greenlet.dead:
            self.greenlet.kill(block=True, timeout=timeout)

    def _main(self) -> None:
        try:
            self.run()
        except gevent.GreenletExit:
            pass

    def run(self) -> None:
        while True:
            with idle():  # an empty inbox is a wait by choice
                message = self.inbox.get()
            if message is _STOP:
                return
            progress()
            self.receive(message)

    def receive(self, message) -> None:
        raise NotImplementedError

    def drain(self, limit: int) -> list:
        """Messages waiting in the inbox, without blocking (for batching)."""
        batch = []
        while len(batch) < limit:
            try:
                message = self.inbox.get_nowait()
            except Empty:
                break
            if message is _STOP:
                self.inbox.put(_STOP)
                break
            batch.append(message)
        return batch
