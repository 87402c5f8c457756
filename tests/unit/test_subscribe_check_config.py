"""The push node's check of signed subscribe URLs as nginx/push-stream.conf and the role's
key set template render it: our module (nginx/subscribe-signature/) is loaded only with
private channels, every private subscriber location of both flavours names its signed
channel and transport, no public one does, and the key set becomes one
`subscribe_signature_key` line per key with its scope. The check itself (every refusal,
its reason in the access log, `nginx -t` refusing a bad key) runs in real nginx in
tests/integration/test_signed_subscribe.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("jinja2", reason="rendering nginx/push-stream.conf needs jinja2 (the venv has it)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.push_node import render_config, render_key_set

MODULE = "/usr/lib/nginx/modules/ngx_http_subscribe_signature_module.so"
TRANSPORTS = ("ev", "ws", "lp", "sub")


def locations(config: str) -> dict[str, str]:
    """Each subscriber location's regex -> its body."""
    return dict(re.findall(r"location ~ (\^/\w+/\S+) \{\n(.*?)\n        \}", config, re.S))


@pytest.mark.parametrize("flavour", ["push_stream", "nchan"])
def test_every_private_subscriber_location_checks_its_transport_and_no_public_one(flavour):
    config = render_config({"push_stream_flavour": flavour, "push_stream_access_log": "/log"})
    assert f"load_module {MODULE};" in config
    checked = {}
    for regex, body in locations(config).items():
        transport = regex.split("/")[1]
        if "(?<signed_channel>" in regex:
            assert regex.startswith(f"^/{transport}/(?<channel>(?<signed_channel>(?:private-|firehose-)"), (
                regex
            )
            assert f"subscribe_signature $signed_channel {transport};" in body, regex
            assert "access_log /log push_node_private;" in body, regex
            checked[transport] = checked.get(transport, 0) + 1
        else:
            assert "subscribe_signature" not in body and "push_node_private" not in body, regex
    # One private location per transport on the plain listener (the only public one here).
    assert checked == dict.fromkeys(TRANSPORTS, 1)


def test_the_check_uses_no_map_and_no_third_party_module():
    config = render_config()
    for gone in ("set_misc", "ndk_http", "set_hmac", "set_md5", "map $args", "$arg_exp", "variables_hash"):
        assert gone not in config, gone
    assert 'subscribe_signature_scoped_prefixes "firehose-";' in config
    assert 'refused="$subscribe_refused"\'' in config


def test_without_private_prefixes_the_module_is_not_loaded():
    config = render_config({"push_stream_private_channel_prefixes": []})
    assert "subscribe_signature" not in config and "subscribe_refused" not in config
    assert "subscribe-keys" not in config


def test_without_scoped_prefixes_no_channel_needs_a_scoped_key():
    assert "subscribe_signature_scoped_prefixes" not in render_config(
        {"push_stream_scoped_channel_prefixes": []}
    )


KEYS = [
    {"id": "app-1", "secret": "ESIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA="},
    {
        "id": "firehose.acme",
        "secret": "EyIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA=",
        "channels": ["firehose-acme", "firehose-acme-eu"],
    },
    {"id": "nothing", "secret": "FCIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA=", "channels": []},
]


def test_the_key_set_is_one_line_per_key_with_its_scope():
    rendered = render_key_set({"push_stream_subscribe_keys": KEYS})
    lines = [line for line in rendered.splitlines() if line.startswith("subscribe_signature_key")]
    assert lines == [
        'subscribe_signature_key "app-1" "ESIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA=";',
        'subscribe_signature_key "firehose.acme" "EyIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA="'
        ' channels "firehose-acme" "firehose-acme-eu";',
        # A key scoped to no channel opens none (not every channel).
        'subscribe_signature_key "nothing" "FCIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA=" channels;',
    ]


def test_an_empty_key_set_renders_no_key():
    assert "subscribe_signature_key " not in render_key_set({"push_stream_subscribe_keys": []}).replace(
        "#   subscribe_signature_key", ""
    )
