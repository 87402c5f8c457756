"""The encrypt stage: AES-256-GCM sealed data that only key holders open, bound to its channel."""

from __future__ import annotations

import base64
import json
import os

import pytest
from conftest import message
from cryptography.exceptions import InvalidTag

from realtime_glue.errors import ConfigError
from realtime_glue.stages.encrypt import Encrypt, open_sealed

KEY = bytes(range(32))


def test_sealed_data_round_trips(context, key_file):
    stage = Encrypt({"key_file": key_file(KEY)}, context)
    data = {"text": "h\u00e9llo", "n": [1, 2]}
    out = stage.process(message(channel="room:1", data=dict(data)))
    assert set(out.data) == {"alg", "kid", "iv", "ct"}
    assert out.data["alg"] == "A256GCM"
    assert "llo" not in json.dumps(out.data)
    assert out.notes["encrypted"] is True
    assert open_sealed(KEY, "room:1", out.data) == data


def test_each_message_gets_a_fresh_iv(context, key_file):
    stage = Encrypt({"key_file": key_file(KEY)}, context)
    first = stage.process(message(data={"a": 1})).data
    second = stage.process(message(data={"a": 1})).data
    assert first["iv"] != second["iv"] and first["ct"] != second["ct"]


def test_the_channel_is_bound(context, key_file):
    sealed = Encrypt({"key_file": key_file(KEY)}, context).process(message(channel="room:1")).data
    with pytest.raises(InvalidTag):
        open_sealed(KEY, "room:2", sealed)


def test_another_key_cannot_open(context, key_file):
    sealed = Encrypt({"key_file": key_file(KEY)}, context).process(message(channel="c")).data
    with pytest.raises(InvalidTag):
        open_sealed(bytes(32), "c", sealed)


def test_key_file_may_hold_base64(context, key_file):
    path = key_file(base64.b64encode(KEY) + b"\n")
    sealed = Encrypt({"key_file": path}, context).process(message(channel="c", data=[1])).data
    assert open_sealed(KEY, "c", sealed) == [1]


def test_key_id_names_the_key_not_the_file(context, key_file):
    raw = Encrypt({"key_file": key_file(KEY, "raw")}, context)
    b64 = Encrypt({"key_file": key_file(base64.b64encode(KEY), "b64")}, context)
    other = Encrypt({"key_file": key_file(os.urandom(32), "other")}, context)
    assert raw.key_id == b64.key_id != other.key_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o601])
def test_key_file_readable_by_others_is_refused(mode, context, key_file):
    path = key_file(KEY, mode=mode)
    with pytest.raises(ConfigError) as info:
        Encrypt({"key_file": path}, context)
    assert info.value.key == "key_file"
    assert str(info.value).startswith("key_file: ")
    assert f"{mode:04o}" in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"too short", "32 raw bytes or their base64"),
        (base64.b64encode(bytes(16)), "holds 16 bytes, needs 32"),
    ],
)
def test_wrong_key_sizes_are_refused(content, problem, context, key_file):
    with pytest.raises(ConfigError, match=problem) as info:
        Encrypt({"key_file": key_file(content)}, context)
    assert info.value.key == "key_file"


def test_missing_key_file_is_named(context, tmp_path):
    with pytest.raises(ConfigError) as info:
        Encrypt({"key_file": str(tmp_path / "nope")}, context)
    assert info.value.key == "key_file"
    assert "cannot read key file" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Encrypt({}, context)
    assert info.value.key == "key_file"
