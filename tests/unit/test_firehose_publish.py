"""The firehose stage: one copy of every message per customer, on every node, counted per
customer; a customer removed from the config has its channel closed on every node.

Fake nodes and backlogs as in test_http_publish.py; a fake ledger for Redis (the real one,
and the real nodes, are in tests/integration/test_firehose.py)."""

from __future__ import annotations

import pytest
from test_http_publish import FakeNode, formatted, sender

from realtime_glue.errors import ConfigError, PublishFailed, PublishRefused
from realtime_glue.message import Message
from realtime_glue.publishers.firehose import FirehosePublish
from realtime_glue.registry import PRESETS

NODES = ["http://127.0.0.1:9", "http://127.0.0.2:9"]


class FakeLedger:
    def __init__(self, known=None):
        self.delivered_counts: dict[str, int] = {}
        self.known = dict(known or {})

    def count(self, delivered):
        for customer, n in delivered.items():
            self.delivered_counts[customer] = self.delivered_counts.get(customer, 0) + n

    def delivered(self):
        return dict(self.delivered_counts)

    def customers(self):
        return dict(self.known)

    def serve(self, channels):
        self.known.update(channels)

    def closed(self, customer):
        self.known.pop(customer)


class DeletingNode(FakeNode):
    """A fake node that also takes DELETE /pub?id=<channel>."""

    def __init__(self, label, answer=True):
        super().__init__(label)
        self.deleted = []
        self.answer = answer

    def delete_channel(self, channel):
        if isinstance(self.answer, Exception):
            raise self.answer
        self.deleted.append(channel)
        return self.answer


def firehose(context, customers=("acme", "globex"), ledger=None, nodes=None, **options) -> FirehosePublish:
    stage = FirehosePublish({"nodes": NODES, "customers": list(customers), **options}, context)
    for node in stage.nodes:
        node.close()
    stage.nodes = nodes or [DeletingNode("a:80"), DeletingNode("b:80")]
    stage.senders = {node.label: sender(node) for node in stage.nodes}
    stage.ledger = ledger if ledger is not None else FakeLedger()
    return stage


def test_the_firehose_preset_anonymizes_before_it_publishes():
    assert PRESETS["firehose"] == ["json", "anonymize", "format", "validate", "firehose"]


def test_every_customer_gets_every_message_on_its_own_channel_on_every_node(context):
    stage = firehose(context)
    stage.start()
    try:
        bodies = [
            stage.process(formatted(context, job_id=f"j{n}", channel=f"article-{n}")).body for n in (1, 2)
        ]
    finally:
        stage.close()
    for node in stage.nodes:
        assert node.received == [
            ("firehose-acme", "j1", bodies[0]),
            ("firehose-globex", "j1", bodies[0]),
            ("firehose-acme", "j2", bodies[1]),
            ("firehose-globex", "j2", bodies[1]),
        ]
    # The body still names the thread the message came from.
    assert b'"channel":"article-1"' in bodies[0]
    assert stage.ledger.delivered() == {"acme": 2, "globex": 2}


def test_a_copy_every_node_refuses_fails_its_message_and_is_not_counted(context):
    stage = firehose(context)
    stage.start()
    ok = formatted(context, job_id="ok")
    bad = Message(job_id="bad", raw=b"", channel="x", event="e", data={})  # no body: no format stage
    try:
        errors = stage.process_batch([ok, bad])
    finally:
        stage.close()
    assert errors[0] is None
    assert "no body" in str(errors[1])
    assert stage.ledger.delivered() == {"acme": 1, "globex": 1}


def test_a_removed_customers_channel_is_closed_on_every_node_at_start(context):
    ledger = FakeLedger(known={"acme": "firehose-acme", "globex": "firehose-globex"})
    stage = firehose(context, customers=["acme"], ledger=ledger)
    stage.start()
    stage.close()
    assert [node.deleted for node in stage.nodes] == [["firehose-globex"], ["firehose-globex"]]
    assert ledger.customers() == {"acme": "firehose-acme"}


def test_a_node_that_cannot_close_the_channel_leaves_it_for_the_next_start(context):
    ledger = FakeLedger(known={"globex": "firehose-globex"})
    nodes = [DeletingNode("a:80"), DeletingNode("b:80", answer=PublishFailed("b:80: ConnectionRefusedError"))]
    stage = firehose(context, customers=["acme"], ledger=ledger, nodes=nodes)
    stage.start()
    stage.close()
    assert nodes[0].deleted == ["firehose-globex"]
    assert "globex" in ledger.customers()  # tried again at the next start
    refusing = [DeletingNode("a:80", answer=PublishRefused("a:80", 405, "Method Not Allowed"))]
    stage = firehose(context, customers=["acme"], ledger=ledger, nodes=refusing)
    stage.start()
    stage.close()
    assert "globex" in ledger.customers()


def test_status_shows_each_customers_channel_and_count_and_what_is_still_closing(context):
    ledger = FakeLedger(known={"old": "firehose-old"})
    ledger.count({"acme": 3, "old": 7})
    stage = firehose(
        context, customers=["acme"], ledger=ledger, nodes=[DeletingNode("a:80", answer=PublishFailed("down"))]
    )
    stage.start()
    stage.close()
    assert stage.status()["firehose"] == {
        "customers": {"acme": "firehose-acme"},
        "delivered": {"acme": 3, "old": 7},
        "closing": ["old"],
    }


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"customers": []}, "customers: at least one customer"),
        ({"customers": ["ac me"]}, "must be 1-64 characters"),
        ({"customers": ["acme", "acme"]}, "listed twice"),
        ({"customers": ["acme"], "channel_prefix": "fire/"}, "channel_prefix"),
    ],
)
def test_a_bad_customer_list_is_a_config_error_naming_the_option(context, options, problem):
    with pytest.raises(ConfigError, match=problem):
        FirehosePublish({"nodes": NODES, **options}, context)
