"""The push node's URL contract against a real nginx rendered from nginx/push-stream.conf.

Every test that uses `node` runs on both flavours: nginx-push-stream-module
(the default; `make nginx-modules` installs its package) and Debian's nchan.
"""

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from push_node import PushNode

pytestmark = pytest.mark.timeout(60)
STORED = (200, 201, 202)


@pytest.fixture(scope="module", params=["push_stream", "nchan"])
def node(request):
    with PushNode(request.param) as started:
        yield started


@pytest.fixture
def channel():
    return f"test-{uuid.uuid4().hex[:12]}"


def test_eventsource_subscriber_receives_published_message_with_its_id(node, channel):
    with node.events(channel) as stream:
        node.wait_for_subscribers(channel)
        assert node.publish(channel, '{"text": "hello"}', event_id="msg-1") in STORED
        event = stream.next_event()
    assert event.data == '{"text": "hello"}'
    if node.flavour == "push_stream":
        assert event.id == "msg-1"
    else:
        print("nchan: the Event-ID header is not kept; the event carries nchan's own id")
        assert event.id


def test_reconnecting_subscriber_recovers_missed_messages_by_last_event_id(node, channel):
    with node.events(channel) as stream:
        node.wait_for_subscribers(channel)
        for number in (1, 2, 3):
            assert node.publish(channel, f"message {number}", event_id=f"id-{number}") in STORED
        first = stream.next_event()
        assert first.data == "message 1"
    # The subscriber saw message 1 and dropped; it comes back with Last-Event-ID.
    with node.events(channel, last_event_id=first.id) as again:
        missed = [again.next_event().data for _ in range(2)]
    assert missed == ["message 2", "message 3"]


def test_subscriber_recovers_on_another_node_after_failover(node, channel):
    if node.flavour != "push_stream":
        pytest.skip("nchan: message ids are per node (its own), so Last-Event-ID cannot move between nodes")
    with PushNode(node.flavour) as other:
        for number in (1, 2, 3):
            for target in (node, other):
                assert target.publish(channel, f"message {number}", event_id=f"id-{number}") in STORED
        with other.events(channel, last_event_id="id-1") as stream:
            missed = [stream.next_event() for _ in range(2)]
    assert [(event.id, event.data) for event in missed] == [("id-2", "message 2"), ("id-3", "message 3")]


def test_publisher_from_disallowed_network_is_refused(node, channel):
    # The default publisher networks are 127.0.0.1/32 and ::1: 127.0.0.2 is outside.
    assert node.publish(channel, "not allowed", source="127.0.0.2") == 403
    assert node.request("GET", "/channels-stats", source="127.0.0.2", listener="cluster")[0] == 403
    assert node.publish(channel, "allowed", source="127.0.0.1") in STORED
    assert node.request("GET", "/channels-stats", source="127.0.0.1", listener="cluster")[0] == 200


def test_publisher_and_statistics_are_not_on_the_public_listener(node, channel):
    # Only the cluster listener has them: on the public one even an allowed
    # network finds nothing there.
    assert node.request("POST", f"/pub?id={channel}", "public", source="127.0.0.1")[0] == 404
    assert node.request("GET", "/channels-stats", source="127.0.0.1")[0] == 404


def test_publisher_networks_come_from_the_configuration(channel):
    with PushNode(overrides={"push_stream_publisher_networks": ["127.0.0.2/32"]}) as node:
        assert node.publish(channel, "from 127.0.0.1", source="127.0.0.1") == 403
        assert node.publish(channel, "from 127.0.0.2", source="127.0.0.2") in STORED


def test_websocket_subscriber_receives_published_message(node, channel):
    with node.websocket(channel) as websocket:
        node.wait_for_subscribers(channel)
        assert node.publish(channel, "over websocket", event_id="ws-1") in STORED
        assert websocket.receive() == "over websocket"


def test_long_polling_subscriber_receives_published_message(node, channel):
    poll = node.long_poll_in_background(channel)
    assert node.publish(channel, "long-polled", event_id="lp-1") in STORED
    status, _, body = poll.result()
    assert status == 200
    assert body.decode().strip() == "long-polled"


def test_streaming_subscriber_receives_one_message_per_line(node, channel):
    conn = node._connection(10, None)
    try:
        conn.request("GET", f"/sub/{channel}")
        response = conn.getresponse()
        assert response.status == 200
        node.wait_for_subscribers(channel)
        node.publish(channel, "first")
        node.publish(channel, "second")
        lines = []
        while len(lines) < 2:
            line = response.readline().decode().strip()
            if line:
                lines.append(line)
    finally:
        conn.close()
    assert lines == ["first", "second"]


def test_subscriber_endpoints_allow_cross_origin_browsers(node, channel):
    browser = {"Origin": "http://page.example"}
    with node.events(channel, headers=browser) as stream:
        headers = {key.lower(): value for key, value in stream.headers.items()}
    assert headers.get("access-control-allow-origin") == "*"


def test_static_document_root_is_served(node):
    (node.directory / "www" / "index.html").write_text("<h1>live</h1>\n")
    status, _, body = node.request("GET", "/")
    assert status == 200
    assert b"live" in body


def test_restarted_node_serves_subscribers_again(node, channel):
    old_pid = node.pid
    node.restart()
    assert node.pid != old_pid
    with node.events(channel) as stream:
        node.wait_for_subscribers(channel)
        node.publish(channel, "after restart", event_id="r-1")
        assert stream.next_event().data == "after restart"
