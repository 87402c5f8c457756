"""SupervisedProcess: what `realtime-glue run` and `realtime-glue readers` share with systemd."""

import os
import signal

import gevent

from realtime_glue.notify import SystemdNotifier
from realtime_glue.process import SupervisedProcess
from realtime_glue.supervisor import EXIT_PART_DIED


def test_a_part_that_dies_stops_the_process_with_exit_70_and_says_why(systemd):
    path, sock = systemd
    process = SupervisedProcess(60.0, SystemdNotifier({"NOTIFY_SOCKET": path}))
    process.begin()
    process.supervisor.spawn("readers rounds", lambda: 1 / 0)
    with gevent.Timeout(5):
        process.wait_for_stop()
    assert process.end() == EXIT_PART_DIED
    assert sock.recv(4096).decode().startswith("STATUS=stopping: readers rounds died: ZeroDivisionError")


def test_sigterm_stops_it_with_exit_0_and_a_part_ending_afterwards_is_no_death(systemd):
    path, _ = systemd
    process = SupervisedProcess(60.0, SystemdNotifier({"NOTIFY_SOCKET": path}))
    process.begin()
    part = process.supervisor.spawn("claim loop", gevent.sleep, 0.3)
    gevent.spawn_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    with gevent.Timeout(5):
        process.wait_for_stop()
    part.join()
    assert process.supervisor.failure is None
    assert process.end() == 0
