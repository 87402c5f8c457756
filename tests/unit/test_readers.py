"""Reader counts across nodes: reading push-stream's statistics, summing, what changed, the
messages on the readers channel and one round of the service, with fake nodes and lease."""

from __future__ import annotations

import json

import pytest
import redis

from realtime_glue.config import parse_config
from realtime_glue.errors import ConfigError, NodeUnreadable
from realtime_glue.readers.messages import Round, readers_messages
from realtime_glue.readers.node_client import parse_channel_readers
from realtime_glue.readers.service import ReadersService
from realtime_glue.readers.tally import Tally, sum_readers, top_channels


def stats(*entries: tuple[str, int]) -> bytes:
    """push-stream's `?id=ALL` answer, byte for byte as the module writes it (names unescaped)."""
    infos = ",\r\n".join(
        f'{{"channel": "{name}", "published_messages": 4, "stored_messages": 2, "subscribers": {count}}}'
        for name, count in entries
    )
    head = '{"hostname": "push1", "time": "2026-11-27T15:22:20", "channels": 2, "wildcard_channels": 0,'
    return f'{head} "uptime": 1, "infos": [\r\n{infos}\r\n]}}\r\n'.encode()


def test_readers_per_channel_come_from_the_statistics():
    assert parse_channel_readers(stats(("demo", 2), ("news", 1), ("idle", 0))) == {"demo": 2, "news": 1}
    assert parse_channel_readers(stats()) == {}


def test_channel_names_that_break_the_json_are_skipped_and_the_others_counted():
    # push-stream writes names unescaped: any browser can create these by subscribing.
    body = stats(("demo", 3), ('quote"and\\backslash', 5), ("café", 2), ("line\nbreak", 1), ("news", 1))
    with pytest.raises(ValueError):
        json.loads(body)
    assert parse_channel_readers(body) == {"demo": 3, "news": 1}


def test_an_answer_that_is_not_push_streams_statistics_is_refused():
    with pytest.raises(ValueError, match="not push-stream"):
        parse_channel_readers(b"Active connections: 3\n")  # nchan's stub status


def test_readers_are_summed_over_the_nodes_without_the_readers_channel():
    per_node = {"push1:80": {"demo": 2, "readers": 7, "news": 1}, "push2:80": {"demo": 3, "sports": 4}}
    assert sum_readers(per_node, exclude="readers") == {"demo": 5, "news": 1, "sports": 4}


def test_the_busiest_channels_are_chosen_stably():
    assert top_channels({"b": 5, "a": 5, "c": 9, "d": 1}, 3) == {"c": 9, "a": 5, "b": 5}
    assert top_channels({"a": 1}, 0) == {}


def test_the_changes_are_what_differs_from_what_was_told_and_zero_for_channels_left():
    tally = Tally()
    assert tally.changes({"demo": 2}) == {"demo": 2}  # nothing told yet: everything
    tally.told_all({"demo": 2, "news": 1})
    assert tally.changes({"demo": 2, "news": 1}) == {}
    assert tally.changes({"demo": 3, "sports": 1}) == {"demo": 3, "news": 0, "sports": 1}
    tally.forget()
    assert tally.changes({"demo": 3}) == {"demo": 3}


FOUND = Round(at=1764256940.5, nodes=2, answered=2, total=9, channels=3)


def bodies(messages):
    return [json.loads(body) for _, body in messages]


def test_a_message_has_the_shape_of_every_message_and_absolute_counts():
    messages = readers_messages(
        {"demo": 5, "news": 0}, full=False, channel="readers", found=FOUND, serial="readers-1", max_size=65536
    )
    assert [event_id for event_id, _ in messages] == ["readers-1-1"]
    (body,) = bodies(messages)
    assert body == {
        "id": "readers-1-1",
        "channel": "readers",
        "event": "readers",
        "data": {
            "readers": {"demo": 5, "news": 0},
            "full": False,
            "part": 1,
            "parts": 1,
            "total": 9,
            "channels": 3,
            "nodes": 2,
            "answered": 2,
            "at": 1764256940,
        },
    }


def test_no_change_is_no_message_but_an_empty_snapshot_is_sent():
    assert readers_messages({}, full=False, channel="readers", found=FOUND, serial="s", max_size=4096) == []
    (body,) = bodies(
        readers_messages({}, full=True, channel="readers", found=FOUND, serial="s", max_size=4096)
    )
    assert body["data"]["readers"] == {} and body["data"]["full"] and body["data"]["snapshot"] == "s"


def test_a_snapshot_larger_than_the_nodes_limit_comes_in_parts_under_it():
    readers = {f"article-{n:05d}": n for n in range(1, 3001)}
    messages = readers_messages(
        readers, full=True, channel="readers", found=FOUND, serial="readers-7", max_size=4096
    )
    assert len(messages) > 10
    assert all(len(body) <= 4096 for _, body in messages)
    parts = bodies(messages)
    assert [p["data"]["part"] for p in parts] == list(range(1, len(parts) + 1))
    assert {p["data"]["parts"] for p in parts} == {len(parts)}
    assert {p["data"]["snapshot"] for p in parts} == {"readers-7"}
    assert len({event_id for event_id, _ in messages}) == len(messages)
    together = {}
    for part in parts:
        together.update(part["data"]["readers"])
    assert together == readers


def config(extra: str = "") -> bytes:
    return f"""
[push]
nodes = ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
timeout = 2
max_message_size = 32768
[metrics]
listen = "0.0.0.0:9310"
{extra}
""".encode()


def test_readers_settings_default_to_push_and_metrics():
    readers = parse_config(config()).readers
    assert readers.nodes == ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
    assert (readers.interval, readers.channel, readers.snapshot_interval) == (1.0, "readers", 10.0)
    assert readers.timeout == 2.0 and readers.max_message_size == 32768
    assert readers.metrics_listen == "0.0.0.0:9309"
    own = parse_config(
        config('[readers]\nnodes = ["http://10.0.0.9:81"]\ninterval = 2\nchannel = "who"')
    ).readers
    assert own.nodes == ["http://10.0.0.9:81"] and own.interval == 2.0 and own.channel == "who"
    assert parse_config(config().replace(b"0.0.0.0:9310", b"")).readers.metrics_listen == ""


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("channel = 'bad channel'", "readers.channel"),
        ("channel = 'ALL'", "readers.channel"),
        ("interval = 0", "readers.interval"),
        ("interval = 5\nsnapshot_interval = 2", "readers.snapshot_interval"),
        ("nodes = ['push1:80']", "readers.nodes[0]"),
        ("top = 3", "readers.top"),
    ],
)
def test_bad_readers_settings_name_their_key(table, key):
    with pytest.raises(ConfigError) as info:
        parse_config(config(f"[readers]\n{table}"))
    assert info.value.key == key


def test_the_pipelines_message_limit_is_the_nodes():
    parsed = parse_config(config("[pipelines.c]\npreset = 'json-anon-http'"))
    options = parsed.pipeline("c").stage_options
    assert options["http"]["max_message_size"] == 32768
    assert options["validate"]["max_body_bytes"] == 32768
    with pytest.raises(ConfigError) as info:
        parse_config(b"[push]\nmax_message_size = 100\n")
    assert info.value.key == "push.max_message_size"


# --- one round, with fake nodes and a fake lease ---------------------------------------


class FakeNode:
    def __init__(self, label: str, readers: dict[str, int] | None):
        self.label = label
        self.readers = readers
        self.published: list[tuple[str, dict]] = []

    def channel_readers(self):
        if self.readers is None:
            raise NodeUnreadable(f"{self.label}: ConnectionRefusedError")
        return dict(self.readers)

    def publish(self, channel, event_id, body):
        self.published.append((channel, json.loads(body)))

    def close(self):
        pass


class FakeLease:
    def __init__(self):
        self.held = True

    def hold(self):
        return self.held

    def release(self):
        self.held = False


@pytest.fixture
def service():
    parsed = parse_config(config("[readers]\nsnapshot_interval = 3600"))
    never_connected = redis.Redis(host="127.0.0.1", port=9)  # the fake lease stands in for it
    readers = ReadersService(parsed, redis=never_connected)
    readers.nodes = [FakeNode("push1:80", {"demo": 1, "readers": 4}), FakeNode("push2:80", {"demo": 2})]
    readers._failing = {node.label: None for node in readers.nodes}
    readers.lease = FakeLease()
    return readers


def published_data(node: FakeNode) -> list[dict]:
    data = [body["data"] for _, body in node.published]
    node.published.clear()
    return data


def test_a_round_publishes_a_snapshot_first_then_only_changes(service):
    push1, push2 = service.nodes
    service.round_once()
    (first,) = published_data(push1)
    assert first["full"] and first["readers"] == {"demo": 3} and first["answered"] == 2
    assert published_data(push2) == [first]  # the same message, same id, on every node
    service.round_once()
    assert published_data(push1) == []  # nothing changed: nothing sent
    push2.readers = {"demo": 1, "news": 2}
    service.round_once()
    (change,) = published_data(push1)
    assert not change["full"] and change["readers"] == {"demo": 2, "news": 2}
    assert service.metrics.total._value.get() == 4


def test_a_node_that_does_not_answer_counts_nothing_and_none_answering_publishes_nothing(service, caplog):
    push1, push2 = service.nodes
    service.round_once()
    published_data(push1)
    push2.readers = None
    service.round_once()
    service.round_once()
    (change,) = published_data(push1)
    assert change["readers"] == {"demo": 1} and change["answered"] == 1
    assert sum("push2:80 cannot read its readers" in r.message for r in caplog.records) == 1
    assert service.metrics.node_up.labels(node="push2:80")._value.get() == 0
    push1.readers = None
    service.round_once()
    assert published_data(push1) == []


def test_a_unit_without_the_lease_stands_by_and_starts_with_a_snapshot_when_it_gets_it(service):
    push1, _ = service.nodes
    service.round_once()
    published_data(push1)
    service.lease.held = False
    push1.readers = {"demo": 5}
    service.round_once()
    assert published_data(push1) == [] and service.metrics.publishing._value.get() == 0
    service.lease.held = True
    service.round_once()
    (again,) = published_data(push1)
    assert again["full"] and again["readers"] == {"demo": 7}
