"""sd_notify over NOTIFY_SOCKET, without a dependency: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import gevent

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address or None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        self.watchdog_interval = (
            int(usec) / 1e6 / 2 if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        )
        self._watchdog = None

    def notify(self, *fields: str) -> bool:
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto("\n".join(fields).encode(), self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    def start_watchdog(self, health: Callable[[], str | None] = lambda: None) -> None:
        """Ping from a greenlet while `health()` finds nothing stuck (it returns None): a
        stuck event loop, or a part of the glue stuck in one step, stops the pings and
        systemd restarts the glue after WatchdogSec."""
        if self.watchdog_interval and self._watchdog is None:
            self._watchdog = gevent.spawn(self._ping_forever, health)

    def _ping_forever(self, health: Callable[[], str | None]) -> None:
        withheld = None
        while True:
            problem = health()
            if problem is None:
                if withheld is not None:
                    log.warning("the glue makes progress again; watchdog pings resume")
                    self.status("running")
                self.notify("WATCHDOG=1")
            elif problem != withheld:
                log.critical("no watchdog ping: %s (systemd restarts the glue after WatchdogSec)", problem)
                self.status(f"stuck: {problem}")
            withheld = problem
            gevent.sleep(self.watchdog_interval)

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.kill(block=False)
            self._watchdog = None
