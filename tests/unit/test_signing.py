"""Signed subscribe URLs (realtime_glue/signing.py): the bytes the push nodes check, the key
that signs, and key sets that must be refused. The nodes' side (nginx/push-stream.conf's check)
is tested against real nginx in tests/integration/test_signed_subscribe.py."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from realtime_glue.errors import ConfigError, SigningError
from realtime_glue.signing import (
    KeySet,
    SubscribeKey,
    is_private,
    load_key_set,
    parse_key_set,
    sign,
    signature,
)

SECRET = bytes(range(32))
NOW = 1767225600 - 3600


def key_set(*keys: SubscribeKey, scoped=("firehose-",)) -> KeySet:
    return KeySet({key.id: key for key in keys}, tuple(scoped), "keys.json")


APP = SubscribeKey("app-1", SECRET)
APP_NEXT = SubscribeKey("app-2", b"\x01" * 32)
ACME = SubscribeKey("firehose-acme", b"\x02" * 32, ("firehose-acme",))


def test_the_signature_is_hmac_sha256_over_context_channel_expiry_transport_in_base64url():
    # Also computed with `openssl dgst -sha256 -mac HMAC` over the same four lines: a change here
    # breaks every node's check (nginx/push-stream.conf) and every URL already handed out.
    assert signature(SECRET, "private-ada", 1767225600) == "kwcXlSc77q0zX_CYLr2YvOxI8EmVneGN5QQ-kUZWmD8"
    assert signature(SECRET, "private-ada", 1767225600, "ws") == "g6GH2Wau3LqxXBTjfzK1rlAETVXp9xdcdka5AxYSuic"


def test_a_signed_url_carries_expiry_key_id_and_signature_in_its_query_string():
    signed = sign(key_set(APP), "private-ada", 3600, now=NOW)
    url = signed.url("https://push.example.org")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "push.example.org", "/ev/private-ada")
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query == {
        "exp": "1767225600",
        "kid": "app-1",
        "sig": "kwcXlSc77q0zX_CYLr2YvOxI8EmVneGN5QQ-kUZWmD8",
    }


def test_an_unbound_signature_serves_every_transport_and_websocket_gets_a_ws_scheme():
    urls = sign(key_set(APP), "private-ada", 60, now=NOW).urls("https://push.example.org/base/")
    assert sorted(urls) == ["ev", "lp", "sub", "ws"]
    assert urls["ws"].startswith("wss://push.example.org/base/ws/private-ada?exp=")
    assert urls["lp"].startswith("https://push.example.org/base/lp/private-ada?exp=")
    assert len({urlsplit(u).query for u in urls.values()}) == 1
    assert sign(key_set(APP), "private-ada", 60, now=NOW).url("http://10.0.0.5", "ws").startswith("ws://")


def test_a_signature_bound_to_a_transport_says_so_and_differs():
    bound = sign(key_set(APP), "private-ada", 3600, transport="ws", now=NOW)
    assert "tr=ws" in bound.query
    assert bound.query.endswith("sig=g6GH2Wau3LqxXBTjfzK1rlAETVXp9xdcdka5AxYSuic")
    assert list(bound.urls()) == ["ws"]
    with pytest.raises(SigningError, match="bound to transport 'ws'"):
        bound.url("", "ev")


def test_without_a_base_url_the_url_is_a_path():
    assert sign(key_set(APP), "private-ada", 5, now=NOW).url().startswith("/ev/private-ada?exp=")


@pytest.mark.parametrize(
    ("channel", "ttl", "transport", "problem"),
    [
        ("private-a.b5", 60, "", "backtrack suffix"),
        ("private/a", 60, "", "characters outside"),
        ("", 60, "", "empty"),
        ("private-a", 0, "", "ttl must be"),
        ("private-a", 60, "sse", "transport must be one of"),
    ],
)
def test_what_cannot_be_signed_is_refused(channel, ttl, transport, problem):
    with pytest.raises(SigningError, match=problem):
        sign(key_set(APP), channel, ttl, transport, now=NOW)


def test_a_channel_is_signed_with_the_key_scoped_to_it_first():
    keys = key_set(APP, ACME)
    assert sign(keys, "firehose-acme", 60, now=NOW).key_id == "firehose-acme"
    assert sign(keys, "private-ada", 60, now=NOW).key_id == "app-1"


def test_a_removed_customers_channel_cannot_be_signed_with_the_applications_key():
    with pytest.raises(SigningError, match=r"only be signed with a key scoped to it.*removed"):
        sign(key_set(APP, ACME), "firehose-globex", 60, now=NOW)
    with pytest.raises(SigningError, match="scoped to it"):
        sign(key_set(APP, ACME), "firehose-globex", 60, key_id="app-1", now=NOW)


def test_during_a_rotation_the_key_id_names_the_signing_key():
    keys = key_set(APP, APP_NEXT)
    with pytest.raises(SigningError, match=r"2 unscoped keys.*name the one that signs"):
        sign(keys, "private-ada", 60, now=NOW)
    new = sign(keys, "private-ada", 60, key_id="app-2", now=NOW)
    old = sign(keys, "private-ada", 60, key_id="app-1", now=NOW)
    assert (new.key_id, old.key_id) == ("app-2", "app-1")
    assert new.query != old.query
    with pytest.raises(SigningError, match=r"no key 'app-3'.*app-1, app-2"):
        sign(keys, "private-ada", 60, key_id="app-3", now=NOW)
    with pytest.raises(SigningError, match="scoped to firehose-acme"):
        sign(key_set(APP, ACME), "private-ada", 60, key_id="firehose-acme", now=NOW)


def test_the_private_naming_rule_is_a_prefix_match():
    assert is_private("private-ada", ("private-", "firehose-"))
    assert not is_private("news", ("private-", "firehose-"))
    assert not is_private("xprivate-ada", ("private-",))


# --- the key set file -----------------------------------------------------------------------


def document(**keys) -> bytes:
    return json.dumps({"keys": keys, "scoped_prefixes": ["firehose-"]}).encode()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_a_key_set_round_trips_through_its_document(key_file):
    keys = key_set(APP, ACME)
    loaded = load_key_set(key_file(keys.document().encode(), "keys.json"))
    assert loaded.keys == keys.keys
    assert loaded.scoped_prefixes == ("firehose-",)


def test_a_key_set_others_can_read_is_refused_naming_the_key(key_file):
    path = key_file(key_set(APP).document().encode(), "keys.json", mode=0o644)
    with pytest.raises(
        ConfigError, match=r"subscribe\.keys_file: key file .* is readable by others \(mode 0644\)"
    ):
        load_key_set(path)


def test_a_missing_key_set_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"subscribe\.keys_file: cannot read key file"):
        load_key_set(str(tmp_path / "nowhere.json"))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (json.dumps({"keys": [], "x": 1}).encode(), "unknown field 'x'"),
        (json.dumps({"keys": []}).encode(), "`keys` must be an object"),
        (document(**{"app 1": {"secret": b64(SECRET)}}), "key id 'app 1' must be"),
        (document(a={"secret": "***"}), "`secret` is not base64"),
        (document(a={"secret": b64(b"short")}), "the secret has 5 bytes, at least 32"),
        (document(a={"secret": b64(SECRET), "scope": "x"}), "unknown field 'scope'"),
        (document(a={"secret": b64(SECRET), "channels": []}), "non-empty list"),
        (document(a={"secret": b64(SECRET), "channels": ["a/b"]}), "characters outside"),
        (json.dumps({"keys": {}, "scoped_prefixes": "firehose-"}).encode(), "scoped_prefixes"),
    ],
)
def test_a_bad_key_set_is_refused_saying_what_is_wrong(raw, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_key_set(raw, "keys.json")
