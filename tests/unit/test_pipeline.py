"""Pipelines built from stage names: presets, preset defaults, derived checks, errors naming keys."""

from __future__ import annotations

import json

import pytest

from realtime_glue.errors import ConfigError, Reject
from realtime_glue.message import Message
from realtime_glue.pipeline import build_pipeline
from realtime_glue.registry import PRESETS
from realtime_glue.stages.encrypt import open_sealed

KEY = bytes(range(32))


@pytest.fixture
def preset_options(key_file, tmp_path):
    return {
        "encrypt": {"key_file": key_file(KEY)},
        "http": {"nodes": ["http://127.0.0.1:9", "http://127.0.0.2:9"]},
        "file": {"path": str(tmp_path / "out.jsonl")},
    }


def job(job_id="job-1", **envelope) -> Message:
    return Message(job_id=job_id, raw=json.dumps(envelope).encode())


@pytest.mark.parametrize(
    ("preset", "order"),
    [
        ("json-anon-http", ["json", "anonymize", "format", "validate", "http"]),
        ("json-secure-http", ["json", "anonymize", "encrypt", "format", "validate", "http"]),
        ("json-anon-file", ["json", "anonymize", "format", "validate", "file"]),
    ],
)
def test_presets_build_their_stages_in_order(preset, order, preset_options, context):
    assert PRESETS[preset] == order
    pipeline = build_pipeline("p", PRESETS[preset], preset_options, context, preset)
    try:
        assert [stage.name for stage in pipeline.stages] == order
    finally:
        pipeline.close()


def test_secure_preset_requires_encryption(preset_options, context):
    secure = build_pipeline("p", PRESETS["json-secure-http"], preset_options, context, "json-secure-http")
    plain = build_pipeline("p", PRESETS["json-anon-http"], preset_options, context, "json-anon-http")
    assert secure.stage("validate").require_encrypted is True
    assert plain.stage("validate").require_encrypted is False
    overridden = build_pipeline(
        "p",
        PRESETS["json-secure-http"],
        {**preset_options, "validate": {"require_encrypted": False}},
        context,
        "json-secure-http",
    )
    assert overridden.stage("validate").require_encrypted is False
    for pipeline in (secure, plain, overridden):
        pipeline.close()


def test_json_to_validate_runs_a_message_through(key_file, context):
    stages = ["json", "anonymize", "encrypt", "format", "validate"]
    options = {"encrypt": {"key_file": key_file(KEY)}}
    pipeline = build_pipeline("p", stages, options, context, "")
    out = pipeline.run(job("j9", channel="room", data={"text": "hi", "email": "a@b.c"}))
    body = json.loads(out.body)
    assert body["id"] == "j9" == out.event_id
    assert body["channel"] == "room"
    assert open_sealed(KEY, "room", body["data"]) == {"text": "hi"}


def test_validate_after_anonymize_forbids_the_dropped_fields(context):
    pipeline = build_pipeline("p", ["json", "anonymize", "validate"], {}, context)
    assert pipeline.stage("validate").forbid_fields == {"email", "ip", "ip_address", "user_agent"}


def test_forbid_fields_follow_a_custom_drop_list(context):
    options = {"anonymize": {"drop": ["author.email", "phone"]}}
    pipeline = build_pipeline("p", ["json", "anonymize", "validate"], options, context)
    assert pipeline.stage("validate").forbid_fields == {"email", "phone"}
    # author.email is dropped; an email left elsewhere is caught, not published.
    clean = pipeline.run(job(channel="c", data={"author": {"email": "a@b.c", "name": "A"}}))
    assert clean.data == {"author": {"name": "A"}}
    with pytest.raises(Reject, match=r"forbidden field.*email"):
        pipeline.run(job(channel="c", data={"author": {"email": "a"}, "reply": {"email": "b"}}))


def test_explicit_forbid_fields_win(context):
    options = {"validate": {"forbid_fields": ["secret"]}}
    pipeline = build_pipeline("p", ["json", "anonymize", "validate"], options, context)
    assert pipeline.stage("validate").forbid_fields == {"secret"}


def test_no_derived_forbid_fields_without_anonymize(context):
    pipeline = build_pipeline("p", ["json", "validate"], {}, context)
    assert pipeline.stage("validate").forbid_fields == set()


@pytest.mark.parametrize(
    ("stages", "options", "key"),
    [
        (["json", "bogus"], {}, "stages[1]"),
        (["json"], {"json": {"max_bytes": -1}}, "json.max_bytes"),
        (["json"], {"json": {"nope": 1}}, "json.nope"),
        (["anonymize"], {"anonymize": {"hash": ["x"]}}, "anonymize.hash_key_file"),
        (["anonymize"], {"anonymize": {"drop": "email"}}, "anonymize.drop"),
        (["encrypt"], {}, "encrypt.key_file"),
        (["format"], {"format": {"include_channel": "yes"}}, "format.include_channel"),
        (["validate"], {"validate": {"max_body_bytes": 0}}, "validate.max_body_bytes"),
        (["http"], {}, "http.nodes"),
        (["http"], {"http": {"nodes": ["ftp://x"]}}, "http.nodes"),
        (["file"], {}, "file.path"),
        (["file"], {"file": {"path": "/tmp/x", "fsync": "sometimes"}}, "file.fsync"),
    ],
)
def test_bad_stage_options_name_the_key(stages, options, key, context):
    with pytest.raises(ConfigError) as info:
        build_pipeline("p", stages, options, context)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_validate_checks_channels_with_the_json_stages_wildcard_prefix(context):
    options = {"json": {"wildcard_prefix": "wild_"}}
    pipeline = build_pipeline("p", ["json", "format", "validate"], options, context)
    # broad_ is an ordinary channel when the node's wildcard prefix is wild_ ...
    out = pipeline.run(job(channel="broad_news", data=1))
    assert json.loads(out.body)["channel"] == "broad_news"
    # ... and wild_ channels are refused.
    with pytest.raises(Reject, match="wildcard prefix 'wild_'"):
        pipeline.run(job(channel="wild_news", data=1))


def test_a_batch_runs_each_message_and_reports_each_failure_in_place(context):
    pipeline = build_pipeline("p", ["json", "format", "validate"], {}, context)
    good = job("good", channel="news", data={"n": 1})
    bad = Message(job_id="bad", raw=b"{not json")
    banned = job("banned", channel="ALL", data={})
    also_good = job("also-good", channel="news", data={"n": 2})
    errors = pipeline.run_batch([good, bad, banned, also_good])
    assert errors[0] is None and errors[3] is None
    assert isinstance(errors[1], Reject) and "not JSON" in str(errors[1])
    assert isinstance(errors[2], Reject) and "reserved" in str(errors[2])
    assert json.loads(also_good.body)["data"] == {"n": 2}
    assert bad.body is None
