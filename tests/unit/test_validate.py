"""The validate stage: stalls messages that break what earlier stages promised."""

from __future__ import annotations

import pytest
from conftest import message

from realtime_glue.errors import Reject
from realtime_glue.stages.format import Format
from realtime_glue.stages.validate import Validate


@pytest.mark.parametrize(
    "data",
    [
        {"email": "a@b.c"},
        {"author": {"profile": {"email": "a@b.c"}}},
        {"replies": [{"text": "x"}, {"meta": [{"email": "a@b.c"}]}]},
        [{"email": "a@b.c"}],
    ],
)
def test_forbidden_fields_are_caught_anywhere(data, context):
    stage = Validate({"forbid_fields": ["email", "ip"]}, context)
    with pytest.raises(Reject, match=r"forbidden field.*email"):
        stage.process(message(data=data))


def test_forbidden_names_as_values_are_fine(context):
    stage = Validate({"forbid_fields": ["email"]}, context)
    data = {"text": "email", "tags": ["email"], "n": {"k": "email"}}
    assert stage.process(message(data=data)).data == data


def test_require_encrypted(context):
    stage = Validate({"require_encrypted": True}, context)
    with pytest.raises(Reject, match="not encrypted"):
        stage.process(message())
    assert stage.process(message(notes={"encrypted": True})).notes == {"encrypted": True}


def test_require_fields(context):
    stage = Validate({"require_fields": ["text", "author"]}, context)
    with pytest.raises(Reject, match="missing from data: author"):
        stage.process(message(data={"text": "x"}))
    assert stage.process(message(data={"text": "x", "author": "a"})).data["author"] == "a"


def test_body_size_limit(context):
    formatted = Format({}, context).process(message(data="x" * 200))
    with pytest.raises(Reject, match=r"body is \d+ bytes, over 100"):
        Validate({"max_body_bytes": 100}, context).process(formatted)
    assert Validate({"max_body_bytes": 1000}, context).process(formatted) is formatted


def test_body_must_be_json(context):
    with pytest.raises(Reject, match="body is not JSON"):
        Validate({}, context).process(message(body=b"{not json"))


def test_channel_is_checked_again(context):
    with pytest.raises(Reject, match="validate: channel 'ALL' is reserved"):
        Validate({}, context).process(message(channel="ALL"))


def test_wildcard_prefix_is_an_option(context):
    with pytest.raises(Reject, match="wildcard prefix 'broad_'"):
        Validate({}, context).process(message(channel="broad_news"))
    assert Validate({"wildcard_prefix": ""}, context).process(message(channel="broad_news"))
