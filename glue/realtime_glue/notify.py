"""sd_notify over NOTIFY_SOCKET, without a dependency: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import os
import socket

import gevent


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

    def start_watchdog(self) -> None:
        """Ping from a greenlet: a stuck event loop stops the pings and systemd restarts us."""
        if self.watchdog_interval and self._watchdog is None:
            self._watchdog = gevent.spawn(self._ping_forever)

    def _ping_forever(self) -> None:
        while True:
            self.notify("WATCHDOG=1")
            gevent.sleep(self.watchdog_interval)

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.kill(block=False)
            self._watchdog = None
