"""One supervised process under systemd (`realtime-glue run`, `realtime-glue readers`).

What both units share: SIGTERM or SIGINT asks it to stop (exit 0); a long-lived
part that dies stops it (exit 70, EXIT_PART_DIED) so that systemd restarts it;
the watchdog pings go out while every part makes progress (supervisor.py). The
unit's own work goes between `begin()` and `wait_for_stop()`, its settling after.
"""

from __future__ import annotations

import logging
import signal

import gevent
import gevent.event

from .notify import SystemdNotifier
from .supervisor import EXIT_PART_DIED, Supervisor

log = logging.getLogger(__name__)


class SupervisedProcess:
    # What the logs call the process ("systemd restarts the glue").
    process_name = "the glue"

    def __init__(self, progress_timeout: float, notifier: SystemdNotifier | None = None):
        self.notifier = notifier or SystemdNotifier()
        self.supervisor = Supervisor(progress_timeout, on_death=self._part_died)
        self.exit_code = 0
        self._stop_requested = gevent.event.Event()

    def request_stop(self) -> None:
        log.info("stop requested")
        self._stop_requested.set()

    def _part_died(self, why: str) -> None:
        self.exit_code = EXIT_PART_DIED
        self.notifier.status(f"stopping: {why}")
        log.critical("stopping so that systemd restarts %s: %s", self.process_name, why)
        self._stop_requested.set()

    def begin(self) -> None:
        """Signals ask the process to stop; the watchdog pings follow the supervisor's health."""
        gevent.signal_handler(signal.SIGTERM, self.request_stop)
        gevent.signal_handler(signal.SIGINT, self.request_stop)
        self.notifier.start_watchdog(self.supervisor.health)

    def wait_for_stop(self) -> None:
        """Until a signal or a dead part; from then on a part that ends is not a death."""
        self._stop_requested.wait()
        self.supervisor.stopping = True

    def end(self) -> int:
        """The last step of `run()`: returns the exit status."""
        self.notifier.stop_watchdog()
        log.info("stopped" if self.exit_code == 0 else f"stopped (exit {self.exit_code})")
        return self.exit_code
