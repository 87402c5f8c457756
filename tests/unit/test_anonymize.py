"""The anonymize stage: personal fields dropped, or replaced by a keyed hash."""

from __future__ import annotations

import pytest
from conftest import message

from realtime_glue.errors import ConfigError
from realtime_glue.stages.anonymize import DEFAULT_DROP, Anonymize


def test_default_fields_are_dropped(context):
    data = {"text": "hi", "email": "a@b.c", "ip": "10.0.0.1", "ip_address": "::1", "user_agent": "curl"}
    out = Anonymize({}, context).process(message(data=data))
    assert out.data == {"text": "hi"}
    assert sorted(DEFAULT_DROP) == ["email", "ip", "ip_address", "user_agent"]


def test_nested_dotted_paths_are_dropped_and_the_rest_kept(context):
    data = {
        "author": {"name": "Ann", "contact": {"phone": "123", "city": "Oslo"}},
        "phone": "top-level stays",
    }
    out = Anonymize({"drop": ["author.contact.phone"]}, context).process(message(data=data))
    assert out.data == {"author": {"name": "Ann", "contact": {"city": "Oslo"}}, "phone": "top-level stays"}


def test_missing_paths_and_non_dict_data_are_left_alone(context):
    stage = Anonymize({"drop": ["author.email", "a.b.c"]}, context)
    assert stage.process(message(data={"author": "Ann", "a": [1]})).data == {"author": "Ann", "a": [1]}
    assert stage.process(message(data=["email"])).data == ["email"]


def test_hash_requires_a_key_file(context):
    with pytest.raises(ConfigError) as info:
        Anonymize({"hash": ["user_id"]}, context)
    assert info.value.key == "hash_key_file"


def test_hash_is_keyed_and_stable(context, key_file):
    key_a = key_file(b"first secret key", "a")
    key_b = key_file(b"second secret key", "b")
    stage_a = Anonymize({"hash": ["user.id"], "hash_key_file": key_a}, context)
    again_a = Anonymize({"hash": ["user.id"], "hash_key_file": key_a}, context)
    stage_b = Anonymize({"hash": ["user.id"], "hash_key_file": key_b}, context)

    def hashed(stage, value):
        return stage.process(message(data={"user": {"id": value, "name": "Ann"}})).data["user"]

    first = hashed(stage_a, "u-42")
    assert first["name"] == "Ann"
    assert first["id"].startswith("anon:") and "u-42" not in first["id"]
    assert hashed(stage_a, "u-42") == first
    assert hashed(again_a, "u-42") == first
    assert hashed(stage_a, "u-43")["id"] != first["id"]
    assert hashed(stage_b, "u-42")["id"] != first["id"]


def test_non_string_values_hash_too(context, key_file):
    stage = Anonymize({"hash": ["n"], "hash_key_file": key_file(b"k")}, context)
    one = stage.process(message(data={"n": 42})).data["n"]
    assert one.startswith("anon:")
    assert stage.process(message(data={"n": 43})).data["n"] != one


def test_a_key_file_others_can_read_is_refused(context, key_file):
    path = key_file(b"secret", mode=0o644)
    with pytest.raises(ConfigError) as info:
        Anonymize({"hash": ["n"], "hash_key_file": path}, context)
    assert info.value.key == "hash_key_file"
    assert "chmod 0600" in str(info.value)
