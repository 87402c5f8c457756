"""The http stage and its per-node senders: every node gets each message, in order; a failing
node's messages wait in its backlog; a refusal for good is dead-lettered at that node.

The nodes are fakes, or (for the POST itself) a tiny gevent WSGI server on loopback; the backlog
feed is an in-memory fake (the Redis feed is tested with a real redis-server elsewhere).
"""

from __future__ import annotations

import json
import socket

import gevent
import pytest
from conftest import message
from gevent.pywsgi import WSGIServer

from realtime_glue.errors import PublishFailed, PublishRefused, Reject
from realtime_glue.jobqueue import JobState
from realtime_glue.publishers.http import HttpPublish
from realtime_glue.publishers.node_sender import NODE_RETRY_MAX, NodeSender, record
from realtime_glue.publishers.push_node import PushNode, excerpt
from realtime_glue.stages.format import Format


class FakeNode:
    """Looks like a PushNode: records what it was sent, or fails while `failing`."""

    def __init__(self, label: str):
        self.label = label
        self.received = []
        self.attempts = 0
        self.failing = False
        self.closed = False
        self.timeout = 5.0

    def start_publish(self, channel, event_id, body):
        self.attempts += 1
        return (channel, event_id, body)

    def wait_for_answers(self, pendings, timeout):
        gevent.sleep(0)  # a real batch waits for the node's answers

    def finish_publish(self, pending, timeout):
        gevent.sleep(0)  # a real POST waits for the node's answer
        if self.failing:
            raise PublishFailed(f"{self.label}: ConnectionRefusedError")
        self.received.append(pending)

    def publish(self, channel, event_id, body):
        self.finish_publish(self.start_publish(channel, event_id, body), 5.0)

    def close(self):
        self.closed = True


class FakeJob:
    def __init__(self, job_id, item):
        self.id = job_id
        self.item = item


class FakeFeed:
    """The JobFeed calls a NodeSender makes, kept in memory in order."""

    def __init__(self):
        self.ready = []
        self.claimed = []
        self.finished = []
        self.stalled = {}
        self.serial = 0

    def put(self, item):
        self.serial += 1
        job_id = f"b{self.serial}"
        self.ready.append(FakeJob(job_id, item))
        return job_id

    def put_many(self, items, ids=None):
        return [self.put(item) for item in items]

    def bury(self, item, reason, job_id=None):
        self.serial += 1
        self.stalled[job_id or f"b{self.serial}"] = (json.loads(item), reason)

    def stall(self, job_id, reason):
        job = next(j for j in self.claimed if j.id == job_id)
        self.claimed.remove(job)
        self.stalled[job_id] = (json.loads(job.item), reason)
        return True

    def trim(self, max_age, max_length):
        return 0, 0

    def dropped_counts(self):
        return {"expired": 0, "full": 0}

    def claim(self, count):
        jobs, self.ready = self.ready[:count], self.ready[count:]
        self.claimed.extend(jobs)
        return jobs

    def finish(self, ids):
        self.finished.extend(ids)
        self.claimed = [j for j in self.claimed if j.id not in ids]

    def release(self, ids):
        back = [j for j in self.claimed if j.id in ids]
        self.claimed = [j for j in self.claimed if j.id not in ids]
        self.ready = back + self.ready

    def counts(self):
        return {"ready": len(self.ready), "claimed": len(self.claimed), "stalled": len(self.stalled)}

    def count_by_state(self):
        return {JobState.READY: len(self.ready), JobState.CLAIMED: len(self.claimed)}

    def held(self):
        """Every held record, oldest first (some may be out being retried right now)."""
        return [json.loads(job.item) for job in self.claimed + self.ready]


def sender(node, feed=None) -> NodeSender:
    return NodeSender(node, feed or FakeFeed(), min_backoff=0.001, max_backoff=0.01)


@pytest.fixture
def stage(context):
    """An http stage with two fake nodes, each with its sender and a backlog on a fake feed."""
    stage = HttpPublish({"nodes": ["http://127.0.0.1:9", "http://127.0.0.2:9"]}, context)
    for node in stage.nodes:
        node.close()
    stage.nodes = [FakeNode("a:80"), FakeNode("b:80")]
    stage.senders = {node.label: sender(node) for node in stage.nodes}
    stage.start()
    yield stage
    stage.close()


def formatted(context, job_id="j1", channel="news", data=None):
    return Format({}, context).process(message(job_id=job_id, channel=channel, data=data or {"n": 1}))


def wait_for(predicate, what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        gevent.sleep(0.002)
    raise AssertionError(f"never happened: {what}")


def test_every_node_gets_the_message_with_the_same_event_id(stage, context):
    msg = stage.process(formatted(context, job_id="j1"))
    a, b = stage.nodes
    assert a.received == b.received == [("news", "j1", msg.body)]
    assert all(sender.live for sender in stage.senders.values())


def test_a_failing_node_holds_the_message_and_the_other_still_gets_it(stage, context):
    a, b = stage.nodes
    b.failing = True
    msg = stage.process(formatted(context, job_id="j1"))  # no exception: the job is done
    assert a.received == [("news", "j1", msg.body)]
    assert b.received == []
    sender_b = stage.senders["b:80"]
    assert not sender_b.live
    assert sender_b.feed.held() == [{"channel": "news", "event_id": "j1", "body": msg.body.decode()}]
    assert sender_b.depth() == 1
    assert stage.senders["a:80"].feed.held() == []


def test_while_a_node_is_down_new_messages_queue_behind_its_backlog(stage, context):
    a, b = stage.nodes
    b.failing = True
    stage.process(formatted(context, job_id="j1"))
    stage.process(formatted(context, job_id="j2"))  # held behind j1 while b fails
    assert [r["event_id"] for r in stage.senders["b:80"].feed.held()] == ["j1", "j2"]
    b.failing = False  # back: the held ones go first, then what comes next
    stage.process(formatted(context, job_id="j3"))
    wait_for(lambda: len(b.received) == 3, "b got all three")
    assert [event_id for _, event_id, _ in b.received] == ["j1", "j2", "j3"]
    assert [event_id for _, event_id, _ in a.received] == ["j1", "j2", "j3"]
    assert stage.senders["b:80"].live


def test_the_backlog_delivers_in_order_once_the_node_is_back(stage, context):
    b = stage.nodes[1]
    b.failing = True
    for n in range(3):
        stage.process(formatted(context, job_id=f"j{n}"))
    assert stage.senders["b:80"].depth() == 3  # nothing lost on failed retries
    b.failing = False
    wait_for(lambda: len(b.received) == 3, "the backlog drained")
    assert [event_id for _, event_id, _ in b.received] == ["j0", "j1", "j2"]
    assert stage.senders["b:80"].depth() == 0


def test_without_backlogs_a_node_failure_fails_the_job(stage, context):
    stage.close()
    stage.senders = {}
    stage.nodes[1].failing = True
    with pytest.raises(PublishFailed, match="b:80"):
        stage.process(formatted(context))
    assert stage.nodes[0].received  # the healthy node still got it


def test_a_message_without_body_is_rejected(stage):
    with pytest.raises(Reject, match="put a format stage before http"):
        stage.process(message())
    assert stage.nodes[0].attempts == 0


def test_a_message_over_the_nodes_size_limit_is_rejected_before_it_is_sent(stage, context):
    stage.max_message_size = 200  # [push] max_message_size: the nodes' client_max_body_size
    with pytest.raises(Reject, match=r"over the push nodes' limit of 200 \(\[push\] max_message_size"):
        stage.process(formatted(context, data={"text": "x" * 300}))
    assert [node.attempts for node in stage.nodes] == [0, 0]
    stage.process(formatted(context, job_id="small", data={"text": "x"}))
    assert [event_id for _, event_id, _ in stage.nodes[0].received] == ["small"]


def test_close_closes_the_nodes(stage):
    stage.close()
    assert all(node.closed for node in stage.nodes)


# --- the POST itself, against a local WSGI server ------------------------------------


@pytest.fixture
def server():
    """A push node publisher endpoint on loopback; `status` is what it answers."""
    requests = []
    state = {"status": "201 Created"}

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        requests.append(
            {
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "query": environ["QUERY_STRING"],
                "event_id": environ.get("HTTP_EVENT_ID"),
                "body": body,
            }
        )
        start_response(state["status"], [("Content-Type", "text/plain")])
        return [b"ok"]

    wsgi = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    wsgi.start()
    yield f"http://127.0.0.1:{wsgi.server_port}", requests, state
    wsgi.stop()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_push_node_posts_to_pub_with_event_id(server):
    url, requests, _ = server
    node = PushNode(url + "/prefix/", timeout=5)
    try:
        node.publish("room:1@x=y", "j7", b'{"id":"j7"}')
    finally:
        node.close()
    # `:`, `@` and `=` are legal in a query (RFC 3986) and go unencoded: nchan
    # does not decode $arg_id, so an encoded id would name another channel.
    assert requests == [
        {
            "method": "POST",
            "path": "/prefix/pub",
            "query": "id=room:1@x=y",
            "event_id": "j7",
            "body": b'{"id":"j7"}',
        }
    ]


@pytest.mark.parametrize(
    ("channel", "event_id"),
    [("news\r\nX-Injected: 1", "j1"), ("news", "j1\r\nX-Injected: 1"), ("news", "j1\nid: 9"), ("a b", "j1")],
)
def test_push_node_sends_nothing_with_a_channel_or_event_id_unfit_for_a_request(server, channel, event_id):
    url, requests, _ = server
    node = PushNode(url, timeout=5)
    try:
        with pytest.raises(Reject, match="cannot be sent"):
            node.publish(channel, event_id, b"{}")
        node.publish("news", "j2", b"{}")  # the connection is fine for the next message
    finally:
        node.close()
    assert [(r["query"], r["event_id"]) for r in requests] == [("id=news", "j2")]


@pytest.mark.parametrize("status", ["400 Bad Request", "403 Forbidden", "413 Request Entity Too Large"])
def test_a_4xx_answer_is_a_refusal_for_good_with_the_answer(server, status):
    url, _, state = server
    state["status"] = status
    node = PushNode(url, timeout=5)
    try:
        with pytest.raises(PublishRefused, match=rf"127\.0\.0\.1:\d+: HTTP {status[:3]}: ok") as info:
            node.publish("c", "j1", b"{}")
    finally:
        node.close()
    assert info.value.reason == f"HTTP {status[:3]}: ok"
    assert isinstance(info.value, Reject)


@pytest.mark.parametrize(
    "status", ["408 Request Timeout", "429 Too Many Requests", "500 Internal Server Error", "503 Unavailable"]
)
def test_a_5xx_408_or_429_answer_is_a_failure_for_now(server, status):
    url, _, state = server
    state["status"] = status
    node = PushNode(url, timeout=5)
    try:
        with pytest.raises(PublishFailed, match=rf"127\.0\.0\.1:\d+: HTTP {status[:3]}$"):
            node.publish("c", "j1", b"{}")
    finally:
        node.close()


def test_an_answer_excerpt_is_one_readable_line():
    page = b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\x00x</body></html>"
    assert excerpt(page) == "413 Request Entity Too Large x"
    assert excerpt(b"") == "(no body)"
    assert len(excerpt(b"y" * 10_000)) == 200


def test_push_node_unreachable_is_a_publish_failure():
    node = PushNode(closed_port_url(), timeout=5)
    try:
        with pytest.raises(PublishFailed, match=r"127\.0\.0\.1:\d+: "):
            node.publish("c", "j1", b"{}")
    finally:
        node.close()


def test_push_node_rejects_bad_urls():
    with pytest.raises(ValueError, match="http"):
        PushNode("ftp://example")


def test_http_stage_with_one_node_down_over_real_sockets(server, context):
    """Real PushNodes: the live node stores the message, the dead one's copy is held."""
    url, requests, _ = server
    dead = closed_port_url()
    stage = HttpPublish({"nodes": [url, dead], "timeout": 5.0}, context)
    stage.senders = {node.label: sender(node) for node in stage.nodes}
    stage.start()
    try:
        msg = stage.process(formatted(context, job_id="j1", channel="live"))
    finally:
        stage.close()
    assert [(r["query"], r["event_id"], r["body"]) for r in requests] == [("id=live", "j1", msg.body)]
    held = stage.senders[PushNode.label_of(dead)].feed.held()
    assert held == [{"channel": "live", "event_id": "j1", "body": msg.body.decode()}]
    assert stage.senders[PushNode.label_of(url)].feed.held() == []


def test_batches_in_flight_together_hold_in_the_order_they_were_sent(stage, context):
    """Batch 1's answer from the failing node comes late, batch 2's early: the backlog still
    gets batch 1's message first, as the node would have."""
    b = stage.nodes[1]
    b.failing = True
    delays = {"j1": 0.05, "j2": 0.0}
    finish = b.finish_publish

    def slow_finish(pending, timeout):
        gevent.sleep(delays[pending[1]])
        finish(pending, timeout)

    b.finish_publish = slow_finish
    first = gevent.spawn(stage.process_batch, [formatted(context, job_id="j1")])
    second = gevent.spawn(stage.process_batch, [formatted(context, job_id="j2")])
    gevent.joinall([first, second])
    assert first.value == [None] and second.value == [None]
    assert [r["event_id"] for r in stage.senders["b:80"].feed.held()] == ["j1", "j2"]


def test_a_refusal_for_good_is_dead_lettered_at_that_node_only(stage, context):
    a, b = stage.nodes
    refusal = PublishRefused("b:80", 413, "413 Request Entity Too Large")

    def refuse(pending, timeout):
        raise refusal

    b.finish_publish = refuse
    msg = stage.process(formatted(context, job_id="j1"))  # the job is done: a has it
    assert a.received == [("news", "j1", msg.body)]
    sender_b = stage.senders["b:80"]
    assert sender_b.live and sender_b.feed.held() == []
    assert list(sender_b.feed.stalled.values()) == [
        (
            {"channel": "news", "event_id": "j1", "body": msg.body.decode()},
            "HTTP 413: 413 Request Entity Too Large",
        )
    ]


def test_a_message_every_node_refuses_fails_the_job_as_a_reject(stage, context):
    def refuse(node):
        def answer(pending, timeout):
            raise PublishRefused(node.label, 413, "too large")

        return answer

    for node in stage.nodes:
        node.finish_publish = refuse(node)
    with pytest.raises(Reject, match="every push node refused the message"):
        stage.process(formatted(context, job_id="j1"))
    assert all(not s.feed.stalled and not s.feed.held() for s in stage.senders.values())


def test_a_node_that_comes_back_under_steady_load_goes_live_again_in_order(stage, context):
    """Batches keep coming, several in flight at once, while the node fails and recovers: its
    messages arrive in claim order, and once its backlog is empty it is sent to directly again
    (with a node marked down until a moment without pending holds, that moment never came)."""
    b = stage.nodes[1]
    b.failing = True
    in_flight = []
    for n in range(300):
        in_flight.append(gevent.spawn(stage.process_batch, [formatted(context, job_id=f"j{n:03}")]))
        if n == 100:
            b.failing = False
        gevent.sleep(0.0005)
    gevent.joinall(in_flight)
    assert all(g.value == [None] for g in in_flight)
    wait_for(lambda: len(b.received) == 300, "every message on the node that came back")
    assert [event_id for _, event_id, _ in b.received] == [f"j{n:03}" for n in range(300)]
    assert stage.senders["b:80"].live
    before = b.attempts
    stage.process(formatted(context, job_id="after"))
    assert b.attempts == before + 1 and b.received[-1][1] == "after"  # straight to the node


def test_after_a_partition_is_taken_over_what_its_last_holder_left_in_a_backlog_goes_first(stage, context):
    """Another instance held a channel's message in node b's backlog and handed the channel's
    partition over; b takes messages again. This instance's sender is live, but the held
    message reaches b before the channel's next one (without looking, the next one went
    straight on and overtook it)."""
    b = stage.nodes[1]
    stage.process(formatted(context, job_id="warm-up"))
    wait_for(lambda: stage.senders["b:80"].live, "the sender to b live")
    stage.senders["b:80"].feed.put(record("news", "held-by-the-other", b'{"n": 1}'))
    stage.partition_taken()
    stage.process(formatted(context, job_id="next"))
    wait_for(lambda: len(b.received) == 3, "both messages on b")
    assert [event_id for _, event_id, _ in b.received] == ["warm-up", "held-by-the-other", "next"]
    wait_for(lambda: stage.senders["b:80"].live, "the sender to b live again")


class NodeFailingSomeOnce(FakeNode):
    """Answers the first try of each event id in `flaky` with a failure for now (a 500)."""

    def __init__(self, label: str, flaky: set[str]):
        super().__init__(label)
        self.flaky = set(flaky)

    def finish_publish(self, pending, timeout):
        if pending[1] in self.flaky:
            self.flaky.discard(pending[1])
            raise PublishFailed(f"{self.label}: HTTP 500")
        super().finish_publish(pending, timeout)


def test_a_node_failing_one_backlog_record_in_ten_is_retried_from_the_shortest_wait_each_time():
    """A drain that delivered records before one failed starts its wait over: a node refusing
    now and then keeps being drained at the shortest wait (the counter used to climb with
    each such failure until every retry waited max_backoff: 40 records took 80 s)."""
    feed = FakeFeed()
    feed.put_many([record("news", f"r{n:02}", b"{}") for n in range(40)])
    node = NodeFailingSomeOnce("a:80", {f"r{n:02}" for n in range(3, 40, 10)})
    drain = NodeSender(node, feed, min_backoff=1.0, max_backoff=64.0)
    waits = []
    drain._wait = waits.append  # count the waits instead of waiting them
    drain.start()
    try:
        wait_for(lambda: len(node.received) == 40, "the backlog drained")
    finally:
        drain.stop()
    assert [event_id for _, event_id, _ in node.received] == [f"r{n:02}" for n in range(40)]
    assert len(waits) == 4 and max(waits) <= 1.0  # each failure waited the first step only


def test_a_node_down_for_hours_is_tried_every_two_seconds_at_most_so_it_gets_its_backlog_soon_after():
    """A node down for a long time (a thousand tries: over half an hour at the longest wait)
    is still tried at least every NODE_RETRY_MAX seconds, so once it answers again it gets
    what it missed within that much: with a 10 s cap a node back from a 5-second restart was
    left without it for up to 7 s more, answering /health while its subscribers came back."""
    feed = FakeFeed()
    feed.put_many([record("news", f"r{n}", b"{}") for n in range(3)])
    node = FakeNode("a:80")
    node.failing = True
    drain = NodeSender(node, feed)  # the default waits
    waits = []

    def wait(seconds):  # counts the waits instead of waiting them; the node returns at 1000
        waits.append(seconds)
        node.failing = len(waits) < 1000

    drain._wait = wait
    drain.start()
    try:
        wait_for(lambda: len(node.received) == 3, "the backlog drained once the node answered")
    finally:
        drain.stop()
    assert len(waits) == 1000
    assert max(waits) <= NODE_RETRY_MAX and waits[-1] >= NODE_RETRY_MAX / 2  # the cap is reached, not passed
    assert [event_id for _, event_id, _ in node.received] == ["r0", "r1", "r2"]
