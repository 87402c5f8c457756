"""sd_notify: what systemd receives on NOTIFY_SOCKET, and the watchdog interval."""

from __future__ import annotations

import os
import socket
import uuid

import gevent
import pytest

from realtime_glue.notify import SystemdNotifier


def received(sock) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_and_stopping_reach_systemd(systemd):
    path, sock = systemd
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.ready("claiming from feed demo")
    assert received(sock) == ["READY=1", "STATUS=claiming from feed demo"]
    notifier.status("3 in flight")
    assert received(sock) == ["STATUS=3 in flight"]
    notifier.stopping("finishing 3 jobs")
    assert received(sock) == ["STOPPING=1", "STATUS=finishing 3 jobs"]


def test_abstract_namespace_socket():
    name = f"realtime-glue-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1") is True
        assert received(sock) == ["READY=1"]


def test_nothing_is_sent_without_notify_socket(monkeypatch):
    def no_socket(*args, **kwargs):
        raise AssertionError("a socket was opened without NOTIFY_SOCKET")

    monkeypatch.setattr(socket, "socket", no_socket)
    notifier = SystemdNotifier({})
    assert notifier.notify("READY=1") is False
    notifier.ready("x")
    notifier.stopping()
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_is_not_an_error(tmp_path):
    assert SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("READY=1") is False


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ, interval):
    assert SystemdNotifier(environ).watchdog_interval == interval


def test_watchdog_pings(systemd):
    path, sock = systemd
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"})
    notifier.start_watchdog()
    try:
        gevent.sleep(0)  # let the ping greenlet run its first ping
        assert received(sock) == ["WATCHDOG=1"]
    finally:
        notifier.stop_watchdog()
    assert notifier._watchdog is None
