"""The json stage: which payloads become messages and why the others are stalled."""

from __future__ import annotations

import json

import pytest

from realtime_glue.errors import ConfigError, Reject
from realtime_glue.message import Message
from realtime_glue.stages.json_envelope import DEFAULT_MAX_BYTES, JsonEnvelope


def run(raw: bytes, context, **options) -> Message:
    return JsonEnvelope(options, context).process(Message(job_id="j", raw=raw))


def payload(**envelope) -> bytes:
    return json.dumps(envelope).encode()


def test_a_good_envelope_becomes_the_message(context):
    msg = run(payload(channel="news:1", event="comment", data={"text": "hi"}), context)
    assert (msg.channel, msg.event, msg.data) == ("news:1", "comment", {"text": "hi"})


def test_event_defaults_to_message_and_can_be_configured(context):
    assert run(payload(channel="c", data=1), context).event == "message"
    assert run(payload(channel="c", data=1), context, default_event="update").event == "update"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"channel": "c", "data": ', "payload is not JSON"),
        (b"", "payload is not JSON"),
        (b'{"channel": "c", "data": "\xff\xfe"}', "payload is not UTF-8"),
        (b'["channel", "data"]', "payload must be a JSON object, got list"),
        (b'{"data": 1}', "payload has no channel"),
        (b'{"channel": "c"}', "payload has no data"),
        (b'{"channel": 5, "data": 1}', "channel must be a string, got int"),
        (b'{"channel": "", "data": 1}', "channel is empty"),
        (b'{"channel": "c", "event": "", "data": 1}', "event must be a non-empty string"),
        (b'{"channel": "c", "event": 3, "data": 1}', "event must be a non-empty string"),
    ],
)
def test_malformed_payloads_are_rejected_with_a_reason(raw, reason, context):
    with pytest.raises(Reject, match=reason):
        run(raw, context)


def test_not_utf8_reason_says_where(context):
    raw = b'{"channel": "c", "data": "caf\xe9"}'
    with pytest.raises(Reject) as info:
        run(raw, context)
    position = raw.index(b"\xe9")
    assert f"at byte {position}" in str(info.value)


def test_default_size_limit_is_64_kib(context):
    assert DEFAULT_MAX_BYTES == 64 * 1024
    head = b'{"channel":"c","data":"'
    tail = b'"}'
    fits = head + b"x" * (DEFAULT_MAX_BYTES - len(head) - len(tail)) + tail
    assert len(fits) == DEFAULT_MAX_BYTES
    assert run(fits, context).channel == "c"
    too_big = head + b"x" * (DEFAULT_MAX_BYTES + 1 - len(head) - len(tail)) + tail
    with pytest.raises(Reject, match=r"payload is 65537 bytes, over the 65536-byte limit"):
        run(too_big, context)


def test_size_limit_is_configurable(context):
    with pytest.raises(Reject, match="over the 10-byte limit"):
        run(payload(channel="c", data=1), context, max_bytes=10)


@pytest.mark.parametrize(
    ("channel", "reason"),
    [
        ("news feed", "characters outside"),
        ("news/1", "characters outside"),
        ("caf\u00e9", "characters outside"),
        ("x" * 129, "129 characters long, the limit is 128"),
        ("ALL", "reserved by push-stream"),
        ("news.b5", "backtrack suffix"),
        ("news.b123", "backtrack suffix"),
        ("broad_news", "wildcard prefix 'broad_'"),
    ],
)
def test_bad_channel_ids_are_rejected(channel, reason, context):
    with pytest.raises(Reject, match=reason):
        run(payload(channel=channel, data=1), context)


@pytest.mark.parametrize("channel", ["x" * 128, "all", "news.b", "news.bar", "a-b_c:d@e.f=g", "news.b5x"])
def test_allowed_channel_ids_pass(channel, context):
    assert run(payload(channel=channel, data=1), context).channel == channel


def test_wildcard_prefix_is_configurable(context):
    assert run(payload(channel="broad_news", data=1), context, wildcard_prefix="").channel == "broad_news"
    with pytest.raises(Reject, match="wildcard prefix 'wild_'"):
        run(payload(channel="wild_news", data=1), context, wildcard_prefix="wild_")


def test_bad_options_name_the_option(context):
    with pytest.raises(ConfigError) as info:
        JsonEnvelope({"max_bytes": 0}, context)
    assert info.value.key == "max_bytes"
    with pytest.raises(ConfigError) as info:
        JsonEnvelope({"max_bytes": "big"}, context)
    assert info.value.key == "max_bytes"
    with pytest.raises(ConfigError) as info:
        JsonEnvelope({"max_byte": 10}, context)
    assert info.value.key == "max_byte"
    assert "unknown option" in str(info.value)
