"""The actor runtime: one inbox, handled in order, bounded inboxes push back, stop drains."""

from __future__ import annotations

import gevent

from realtime_glue.actor import Actor


class Recorder(Actor):
    def __init__(self, inbox_size=None):
        super().__init__(name="recorder", inbox_size=inbox_size)
        self.handled = []

    def receive(self, message):
        gevent.sleep(0)  # yield between messages, as real handlers do on I/O
        self.handled.append(message)


def test_messages_are_handled_in_order():
    actor = Recorder().start()
    for n in range(50):
        actor.send(n)
    actor.stop()
    assert actor.handled == list(range(50))
    assert actor.greenlet.dead


def test_stop_handles_what_was_queued_before_it():
    actor = Recorder()
    for n in range(5):
        actor.send(n)
    actor.start()
    actor.stop()
    assert actor.handled == [0, 1, 2, 3, 4]


def test_a_full_bounded_inbox_blocks_the_sender():
    actor = Recorder(inbox_size=2)
    sender = gevent.spawn(lambda: [actor.send(n) for n in range(5)])
    gevent.sleep(0)
    gevent.sleep(0)
    # Nothing is consuming: the sender put two messages and waits for room.
    assert not sender.ready()
    assert actor.inbox.qsize() == 2
    actor.start()
    sender.join()
    actor.stop()
    assert sender.successful()
    assert actor.handled == [0, 1, 2, 3, 4]


def test_drain_takes_waiting_messages_without_blocking():
    actor = Recorder()
    for n in range(4):
        actor.send(n)
    assert actor.drain(3) == [0, 1, 2]
    assert actor.drain(10) == [3]
    assert actor.drain(10) == []


def test_a_run_actor_is_killed_on_stop():
    class Looper(Actor):
        laps = 0

        def run(self):
            while True:
                self.laps += 1
                gevent.sleep(0)

    actor = Looper().start()
    gevent.sleep(0)
    actor.stop()
    assert actor.greenlet.dead
    assert actor.laps >= 1


def test_stop_before_start_is_harmless():
    actor = Recorder()
    actor.stop()
    assert actor.stopping is True
