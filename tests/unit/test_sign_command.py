"""`realtime-glue sign` and `realtime-glue firehose url`, run as the user runs them."""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlsplit

import pytest
from test_cli import EX_CONFIG, realtime_glue

from realtime_glue.signing import KeySet, SubscribeKey, signature

APP = SubscribeKey("app-1", b"\x07" * 32)
ACME = SubscribeKey("firehose-acme", b"\x08" * 32, ("firehose-acme",))
GLOBEX = SubscribeKey("firehose-globex", b"\x09" * 32, ("firehose-globex",))


@pytest.fixture
def setup(tmp_path):
    """A config with [subscribe] and a firehose pipeline, and its key set (0600)."""

    def write(keys=(APP, ACME, GLOBEX), customers=("acme", "globex"), mode=0o600):
        keys_path = tmp_path / "subscribe-keys.json"
        keys_path.write_text(KeySet({k.id: k for k in keys}, ("firehose-",)).document())
        os.chmod(keys_path, mode)
        config = tmp_path / "glue.toml"
        config.write_text(
            f"""
[push]
nodes = ["http://127.0.0.1:9"]
[subscribe]
keys_file = "{keys_path}"
url = "https://push.example.org"
[pipelines.firehose]
preset = "firehose"
[pipelines.firehose.firehose]
customers = {json.dumps(list(customers))}
"""
        )
        return str(config)

    return write


def query_of(url: str) -> dict:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_sign_prints_a_url_the_nodes_accept(setup):
    result = realtime_glue("-c", setup(keys=(APP,)), "sign", "private-ada", "--ttl", "600")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("https://push.example.org/ev/private-ada?exp=")
    query = query_of(url)
    assert query["kid"] == "app-1"
    assert query["sig"] == signature(APP.secret, "private-ada", int(query["exp"]))


def test_sign_json_lists_every_transport_and_a_bound_transport_is_signed(setup):
    result = realtime_glue("-c", setup(keys=(APP,)), "sign", "private-ada", "--transport", "ws", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["transport"] == "ws"
    assert list(printed["urls"]) == ["ws"]
    assert printed["urls"]["ws"].startswith("wss://push.example.org/ws/private-ada?")
    query = query_of(printed["urls"]["ws"])
    assert query["tr"] == "ws"
    assert query["sig"] == signature(APP.secret, "private-ada", int(query["exp"]), "ws")


def test_sign_notes_a_public_channel(setup):
    result = realtime_glue("-c", setup(keys=(APP,)), "sign", "news")
    assert result.returncode == 0
    assert "note: news is a public channel" in result.stderr


def test_a_key_set_others_can_read_exits_78_naming_the_key(setup):
    config = setup(mode=0o640)
    for command in (["sign", "private-ada"], ["check-config"], ["firehose", "url", "firehose", "acme"]):
        result = realtime_glue("-c", config, *command)
        assert result.returncode == EX_CONFIG, (command, result.stdout, result.stderr)
        assert "config error: subscribe.keys_file: key file" in result.stderr
        assert "is readable by others (mode 0640); chmod 0600 it" in result.stderr
        assert "https://" not in result.stdout


def test_check_config_names_the_keys_it_loaded(setup):
    result = realtime_glue("-c", setup(), "check-config")
    assert result.returncode == 0, result.stderr
    assert (
        "pipeline firehose: feed firehose: json -> anonymize -> format -> validate -> firehose"
        in result.stdout
    )
    assert ": app-1, firehose-acme, firehose-globex" in result.stdout


def test_firehose_url_is_signed_with_the_customers_own_key(setup):
    result = realtime_glue("-c", setup(), "firehose", "url", "firehose", "acme")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("https://push.example.org/ev/firehose-acme?")
    query = query_of(url)
    assert query["kid"] == "firehose-acme"
    assert query["sig"] == signature(ACME.secret, "firehose-acme", int(query["exp"]))


def test_a_customer_removed_from_the_config_gets_no_url(setup):
    # Removed from the pipeline (its key may linger in the key set for a while).
    result = realtime_glue("-c", setup(customers=("acme",)), "firehose", "url", "firehose", "globex")
    assert result.returncode == 1
    assert (
        "'globex' is not a customer of pipelines.firehose (customers: acme): no URL for it" in result.stderr
    )
    assert result.stdout == ""
    # Its key removed as well: `sign` cannot stand in with the application's key.
    result = realtime_glue("-c", setup(keys=(APP, ACME), customers=("acme",)), "sign", "firehose-globex")
    assert result.returncode == 1
    assert (
        "cannot sign: channel 'firehose-globex' can only be signed with a key scoped to it" in result.stderr
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("url = 'push.example.org'", "subscribe.url: expected the nodes' public http(s):// address"),
        ("private_prefixes = ['private-', '']", "subscribe.private_prefixes: expected a list of non-empty"),
        ("key = 'app-1'", "subscribe.key: unknown key"),
    ],
)
def test_a_bad_subscribe_table_exits_78_naming_the_key(tmp_path, table, message):
    config = tmp_path / "glue.toml"
    config.write_text(f"[subscribe]\n{table}\n")
    result = realtime_glue("-c", str(config), "check-config")
    assert result.returncode == EX_CONFIG
    assert message in result.stderr


def test_without_a_key_set_sign_says_what_to_set(tmp_path):
    config = tmp_path / "glue.toml"
    config.write_text("[subscribe]\n")
    result = realtime_glue("-c", str(config), "sign", "private-ada")
    assert result.returncode == EX_CONFIG
    assert "subscribe.keys_file: not set" in result.stderr
