"""An EventSource subscriber that reconnects with Last-Event-ID while messages are being
published gets every message after that id, none skipped (over HTTP and HTTPS).

push-stream sends a new subscriber the stored messages after its Last-Event-ID and
then adds it to the channel's subscribers, each step under the channel's lock, but
not both under one. A message another worker published between the two steps was
not among the stored ones it sent, and it went to the workers that had subscribers
on the channel then, not this one: the subscriber never got it. Every reconnection
during a publish could lose one; the cluster's rolling restart lost one now and then
at a failover (a subscriber catching up on hundreds of messages while the glue kept
publishing). Our package carries
debian/patches/subscriber-joins-the-channel-before-its-stored-messages.patch: the
subscriber joins the channel first, so a message published meanwhile reaches it as
a new one, or as a stored one, or both (a repeat, which clients drop by id), never
neither.

Debian 13 hosts run Debian's own package, which lacks the patch: the EventSource test is
skipped there; the long-polling one (a path the patch leaves alone) runs on both.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid

import pytest

from support.push_node import PushNode, ServerTLS, our_patch_missing
from support.tls import TestCA

pytestmark = pytest.mark.timeout(300)
RECONNECTIONS = 200
# About a comment's size.
PADDING = "x" * 480
POLLS = 1000
BEHIND = 200  # how many stored messages each reconnection catches up on (about 100 KB)


@pytest.fixture(scope="module", params=["http", "https"])
def node(request, tmp_path_factory):
    tls = None
    if request.param == "https":
        ca = TestCA.create(tmp_path_factory.mktemp("ca"))
        certificate = ca.intermediate().issue(["localhost"], ips=["127.0.0.1"])
        tls = ServerTLS(certificate.certificate_path, certificate.key_path, ca.certificate_path)
    # Two workers (the role's default here): the race needs the publisher and the
    # subscriber on different ones. A store of 5000: every replay is in it.
    overrides = {
        "push_stream_worker_processes": 2,
        "push_stream_max_messages_stored_per_channel": 5000,
        # Messages over the store's size wait for the cleanup timer: room for all of them.
        "push_stream_shared_memory_size": "256m",
    }
    with PushNode("push_stream", overrides=overrides, tls=tls) as started:
        yield started


class Publisher:
    """Publishes m0, m1, ... on one keep-alive connection, as fast as the node takes them,
    on the channel named last (`switch`): each reconnection gets a channel of its own, so
    no other subscriber of it is on the node (one on the same worker would hide the loss)."""

    def __init__(self, node: PushNode):
        self.node = node
        self.channel: str | None = None
        self.first: int | None = None  # the number of the first message on the channel
        self.published = 0
        self.failures: list[str] = []
        self._next: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def switch(self) -> str:
        """A new channel to publish on; returns once BEHIND messages are stored on it."""
        self.first, self._next = None, f"resume-{uuid.uuid4().hex[:10]}"
        if not self._thread.is_alive():
            self._thread.start()
        while (self.first is None or self.published - self.first < BEHIND + 1) and not self.failures:
            time.sleep(0.005)
        return self.channel

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.node.host, self.node.cluster_port, timeout=10)
        while not self._stopping.is_set():
            n = self.published
            if self._next is not None:  # the switch takes effect with this message
                self.channel, self._next = self._next, None
                self.first = n
            body = f'{{"n": {n}, "text": "{PADDING}"}}'
            connection.request("POST", f"/pub?id={self.channel}", body, {"Event-ID": f"m{n}"})
            response = connection.getresponse()
            response.read()
            if response.status not in (200, 201, 202):
                self.failures.append(f"m{n}: HTTP {response.status}")
                return
            self.published = n + 1
        connection.close()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)


def resume(node: PushNode, channel: str, after: int, until: int) -> list[int]:
    """Subscribe with Last-Event-ID m<after>; the numbers received up to m<until>."""
    received = []
    with node.events(channel, last_event_id=f"m{after}", timeout=20) as stream:
        while not received or received[-1] < until:
            received.append(int(stream.next_event().id[1:]))
    return received


def test_eventsource_subscribers_resuming_during_publishes_miss_nothing(node):
    if why := our_patch_missing("a message published while a subscriber joins can still be lost"):
        print(f"skipping: {why}")
        pytest.skip(why)
    publisher = Publisher(node)
    gaps, repeats = [], 0
    try:
        for _ in range(RECONNECTIONS):
            channel = publisher.switch()
            assert not publisher.failures, publisher.failures
            after = publisher.first  # the channel's first message: BEHIND and more follow it
            received = resume(node, channel, after, publisher.published + 20)
            expected = list(range(after + 1, received[-1] + 1))
            repeats += len(received) - len(set(received))
            if sorted(set(received)) != expected:
                gaps.append(sorted(set(expected) - set(received))[:5])
    finally:
        publisher.stop()
    print(
        f"{RECONNECTIONS} reconnections, each catching up on {BEHIND}+ messages while more were "
        f"published: {repeats} messages came twice (published as the subscriber joined)"
    )
    assert gaps == [], f"{len(gaps)} of {RECONNECTIONS} reconnections missed messages, e.g. {gaps[:3]}"


def test_long_polling_subscribers_polling_during_publishes_miss_nothing(node):
    """A long-poller asks again after each answer, with the last id it got, and misses nothing
    while messages are published. The patch leaves this path alone (polling_handler): a poll
    that finds nothing new joins the channel after that look, so a message published between
    the two could in principle be lost the same way, but the look holds the lock only briefly
    (no replay to write), and no loss was seen here (1,000 to 2,000 polls per run, several runs)."""
    publisher = Publisher(node)
    decoder = json.JSONDecoder()
    received: list[int] = []
    try:
        channel = publisher.switch()
        last = publisher.first
        for _ in range(POLLS):
            status, _, body = node.long_poll(channel, headers={"Last-Event-ID": f"m{last}"}, timeout=10)
            assert status == 200, (status, body)
            text, at = body.decode(), 0
            while at < len(text):  # the answer is the messages' bodies, one after another
                message, at = decoder.raw_decode(text, at)
                received.append(message["n"])
            last = received[-1]
    finally:
        publisher.stop()
    expected = list(range(publisher.first + 1, received[-1] + 1))
    missing = sorted(set(expected) - set(received))
    print(f"{POLLS} long polls: {len(received)} messages, {len(missing)} missed")
    assert missing == [], f"{len(missing)} missed, e.g. {missing[:10]}"
