"""The push node's ceilings, set from the push_stream role's variables, on a real nginx.

A subscriber creates the channel it names, so without a ceiling a stranger could fill
the shared memory with channels or one channel could take every connection: beyond
push_stream_max_number_of_channels or push_stream_max_subscribers_per_channel a
subscriber gets 403, and a message over push_stream_max_message_size gets 413.
"""

from __future__ import annotations

import pytest

from support.push_node import PushNode

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def small_node():
    node = PushNode(
        overrides={
            "push_stream_max_number_of_channels": 3,
            "push_stream_max_subscribers_per_channel": 2,
            "push_stream_max_message_size": "1k",
        }
    )
    if node.flavour != "push_stream":
        why = "nchan has no ceiling on channels or subscribers per channel"
        print(f"skipping: {why}")
        node.cleanup()
        pytest.skip(why)
    node.start()
    yield node
    node.stop()
    node.cleanup()


def test_a_third_subscriber_of_a_channel_is_refused(small_node):
    readers = [small_node.events("thread") for _ in range(2)]
    try:
        # push-stream sends a subscriber its headers before it counts it (and checks the
        # ceiling in another worker without a lock): ask only once both are counted.
        small_node.wait_for_subscribers("thread", 2)
        status, _, body = small_node.request("GET", "/ev/thread", timeout=5)
        assert status == 403, body
        assert small_node.subscribers("thread") == 2
    finally:
        for stream in readers:
            stream.close()


def test_a_fourth_channel_is_refused_to_subscribers_and_publishers(small_node):
    readers = [small_node.events(f"room-{n}") for n in range(3)]
    try:
        for n in range(3):
            small_node.wait_for_subscribers(f"room-{n}")
        status, _, body = small_node.request("GET", "/ev/room-4", timeout=5)
        assert status == 403, body
        assert small_node.publish("room-5", "hello") == 403
        # The channels that exist still take messages.
        assert small_node.publish("room-0", "hello") in (200, 201, 202)
    finally:
        for stream in readers:
            stream.close()


def test_a_message_over_the_size_limit_is_refused(small_node):
    assert small_node.publish("thread", "x" * 1024) in (200, 201, 202)
    assert small_node.publish("thread", "x" * 1025) == 413
