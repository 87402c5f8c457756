"""The supervisor: a part that dies stops the glue; a part stuck in one step stops the pings."""

from __future__ import annotations

import socket

import gevent
import gevent.event
import pytest

from realtime_glue.notify import SystemdNotifier
from realtime_glue.supervisor import Supervisor, idle, pause, progress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def deaths():
    return []


@pytest.fixture
def supervisor(deaths):
    return Supervisor(progress_timeout=60, on_death=deaths.append, clock=Clock())


def test_a_part_that_raises_stops_the_glue(supervisor, deaths):
    def claim_loop():
        gevent.sleep(0)
        raise OverflowError("int too large to convert to float")

    greenlet = supervisor.spawn("claim loop", claim_loop)
    gevent.wait([greenlet], timeout=5)
    assert deaths == ["claim loop died: OverflowError: int too large to convert to float"]
    assert supervisor.health() == deaths[0]


def test_a_part_that_returns_while_the_glue_runs_stops_it_too(supervisor, deaths):
    gevent.wait([supervisor.spawn("finisher", lambda: None)], timeout=5)
    assert deaths == ["finisher ended"]


def test_parts_stopped_on_purpose_are_no_deaths(supervisor, deaths):
    forever = supervisor.spawn("heartbeat", lambda: gevent.sleep(3600))
    gevent.sleep(0)
    forever.kill()
    supervisor.stopping = True
    gevent.wait([supervisor.spawn("reclaimer", lambda: None)], timeout=5)
    assert deaths == [] and supervisor.health() is None


def test_a_part_told_to_stop_may_end_while_the_glue_runs(supervisor, deaths):
    # A partition handed over: its claim loop ends, the glue runs on.
    told = False
    loop = supervisor.spawn("claim loop", lambda: gevent.sleep(0), told_to_stop=lambda: told)
    told = True
    gevent.wait([loop], timeout=5)
    assert deaths == []
    # One that was not told to stop, and ends, still stops the glue.
    other = supervisor.spawn("claim loop", lambda: None, told_to_stop=lambda: False)
    gevent.wait([other], timeout=5)
    assert deaths == ["claim loop ended"]


def test_a_part_busy_in_one_step_past_the_timeout_is_stuck(supervisor):
    clock = supervisor.clock
    steps = []

    def drainer():
        while True:
            progress()
            steps.append(clock.now)
            gevent.sleep(0)  # a call that returns: one step each lap
            if len(steps) == 3:
                gevent.sleep(3600)  # then a call that never returns

    supervisor.spawn("backlog push1:80", drainer)
    gevent.sleep(0.01)
    clock.now += 59
    assert supervisor.health() is None
    clock.now += 2
    problem = supervisor.health()
    assert problem.startswith("backlog push1:80 stuck for 61s at ")
    assert "drainer" in problem or "sleep" in problem  # where it is stuck


def test_waiting_by_choice_is_never_stuck_and_each_wait_counts_as_progress(supervisor):
    clock = supervisor.clock
    supervisor.spawn("finisher", lambda: [pause(3600)])
    with_idle = gevent.event.Event()

    def inbox():
        with idle():
            with_idle.wait()
        gevent.sleep(3600)  # busy after the wait

    supervisor.spawn("inbox", inbox)
    gevent.sleep(0.01)
    clock.now += 10_000
    assert supervisor.health() is None
    with_idle.set()
    gevent.sleep(0.01)
    assert supervisor.health() is None  # the wait just ended: that was progress
    clock.now += 61
    assert supervisor.health().startswith("inbox stuck for 61s")


def test_a_batch_is_watched_while_it_runs(supervisor):
    clock = supervisor.clock

    def batch():
        with supervisor.track("a batch of 3 jobs from j1"):
            gevent.sleep(3600)

    greenlet = gevent.spawn(batch)
    gevent.sleep(0.01)
    clock.now += 120
    assert supervisor.health().startswith("a batch of 3 jobs from j1 stuck for 120s")
    greenlet.kill()
    assert supervisor.health() is None


def test_the_watchdog_pings_only_while_nothing_is_stuck(tmp_path, supervisor):
    path = str(tmp_path / "notify")
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(path)
    systemd.setblocking(False)
    clock = supervisor.clock
    supervisor.spawn("claim loop", lambda: gevent.sleep(3600))
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})  # a ping each 10 ms

    def received() -> list[str]:
        datagrams = []
        while True:
            try:
                datagrams.append(systemd.recv(4096).decode())
            except BlockingIOError:
                return datagrams

    notifier.start_watchdog(supervisor.health)
    try:
        gevent.sleep(0.05)
        assert "WATCHDOG=1" in received()
        clock.now += 61
        gevent.sleep(0.05)
        withheld = received()
        assert "WATCHDOG=1" not in withheld[1:]  # at most the ping already on its way
        assert any(d.startswith("STATUS=stuck: claim loop stuck for 61s") for d in withheld)
        gevent.sleep(0.05)
        assert received() == []  # still stuck: no ping, no repeated status
    finally:
        notifier.stop_watchdog()
        systemd.close()
