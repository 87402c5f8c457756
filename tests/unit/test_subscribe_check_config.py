"""The push node's check of signed subscribe URLs as nginx/push-stream.conf renders it: its
maps, read out of the rendered config and the key set and evaluated here as nginx's `map`
does (regexes in order, the first match's value, else the default). nginx compares no
numbers, so the expiry is a regex over "exp:$msec": tested across digit boundaries and
against integer comparison. The whole check runs in real nginx in
tests/integration/test_signed_subscribe.py."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("jinja2", reason="rendering nginx/push-stream.conf needs jinja2 (the venv has it)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.push_node import render_config, render_key_set


def nginx_map(config: str, source: str) -> tuple[list[tuple[re.Pattern, str]], dict[str, str], str]:
    """The map whose source is `source` (as written after `map`): its regex entries in
    order, its exact entries and its default."""
    block = re.search(r"map " + re.escape(source) + r" \$\w+ \{\n(.*?)\n\s*\}", config, re.S)
    assert block, f"no map {source} in the rendered config"
    regexes, exact, default = [], {}, None
    for line in block.group(1).splitlines():
        entry = re.fullmatch(r'\s*("(?:[^"\\]|\\.)*"|\S+)\s+("(?:[^"\\]|\\.)*"|\S+);', line)
        if not entry:
            continue
        key, value = (part[1:-1] if part.startswith('"') else part for part in entry.groups())
        if key == "default":
            default = value
        elif key.startswith("~"):
            regexes.append((re.compile(key[1:]), value))
        else:
            exact[key] = value
    return regexes, exact, default


def evaluate(entries, text: str) -> str:
    """What nginx gives: an exact entry, else the first regex that matches, else the default
    ($1 in a value is the regex's first group)."""
    regexes, exact, default = entries
    if text in exact:
        return exact[text]
    for pattern, value in regexes:
        if match := pattern.search(text):
            return value.replace("$1", match.group(1) or "") if match.groups() else value
    return default


@pytest.fixture(scope="module")
def config() -> str:
    return render_config()


@pytest.fixture(scope="module")
def expiry(config):
    return nginx_map(config, '"$arg_exp:$msec"')


def problem(expiry, expires: str, now: float) -> str:
    return evaluate(expiry, f"{expires}:{now:.3f}")


@pytest.mark.parametrize(
    "expires, now",
    [
        (1767225600, 1767225599.999),
        (1767225601, 1767225600.0),
        (1800000000, 1799999999.5),
        (2000000000, 1999999999.0),
        (2000000001, 1999999999.0),
        (9999999999, 9999999998.0),
        (1767225610, 1767225609.0),
        (1767226000, 1767225999.0),
    ],
)
def test_an_expiry_after_now_passes(expiry, expires, now):
    assert problem(expiry, str(expires), now) == ""


@pytest.mark.parametrize(
    "expires, now",
    [
        (1767225600, 1767225600.0),  # the second it expires: refused, as `exp > now` says
        (1767225600, 1767225600.999),
        (1767225599, 1767225600.0),
        (1799999999, 1800000000.0),
        (1999999999, 2000000000.0),
        (1767225609, 1767225610.0),
        (1000000000, 1767225600.0),
    ],
)
def test_an_expiry_now_or_before_is_expired(expiry, expires, now):
    assert problem(expiry, str(expires), now) == "expired"


def test_the_expiry_agrees_with_integer_comparison_across_many_pairs(expiry):
    rng = random.Random(11)
    for _ in range(20_000):
        now = rng.randrange(1_000_000_000, 9_999_999_999)
        # Near now (every digit position can decide) and anywhere.
        expires = now + rng.choice(
            [rng.randrange(-3, 4), rng.randrange(-(10**6), 10**6), rng.randrange(-(10**9), 10**9)]
        )
        if not 1_000_000_000 <= expires <= 9_999_999_999:
            continue
        wanted = "" if expires > now else "expired"
        assert problem(expiry, str(expires), now + rng.random() * 0.999) == wanted, (expires, now)


@pytest.mark.parametrize(
    "expires", ["", "176722560", "17672256000", "1767225600x", "+767225600", "1767225600.5"]
)
def test_an_expiry_of_other_than_ten_digits_is_malformed(expiry, expires):
    assert problem(expiry, expires, 1767225000.0) == "malformed expiry"


def test_the_transport_binding(config):
    transport = nginx_map(config, '"$arg_tr:$subscribe_transport"')
    assert evaluate(transport, ":ev") == ""
    assert evaluate(transport, "ev:ev") == ""
    assert evaluate(transport, "sub:sub") == ""
    assert evaluate(transport, "ws:ev") == "signed for transport ws"
    assert evaluate(transport, "s:sub") == "signed for transport s"
    assert evaluate(transport, "sub:s") == "signed for transport sub"


PROBLEMS = ("query", "expiry", "transport", "key_scope", "signature")


def test_the_first_problem_is_the_reason(config):
    first = nginx_map(config, '"' + "|".join(f"$subscribe_{name}_problem" for name in PROBLEMS) + '"')
    assert evaluate(first, "||||") == ""
    assert evaluate(first, "unsigned|malformed expiry|||bad signature") == "unsigned"
    assert evaluate(first, "|||unknown key|bad signature") == "unknown key"
    assert evaluate(first, "||||bad signature") == "bad signature"


def test_a_repeated_argument_and_a_missing_one_are_refused(config):
    query = nginx_map(config, "$args")
    sig = "A" * 43
    assert evaluate(query, f"exp=1767225600&kid=app-1&sig={sig}") == ""
    assert evaluate(query, f"exp=1767225600&kid=app-1&tr=ev&sig={sig}") == ""
    assert evaluate(query, f"exp=1&kid=a&sig={sig}&sig=y") == "repeated sig"
    assert evaluate(query, "exp=1&kid=a&tr=ev&sig=x&tr=ws") == "repeated tr"
    assert evaluate(query, "sig=x&kid=a&exp=1") == "$subscribe_arguments_problem"  # another order
    assert evaluate(query, "exp=1&kid=a&sig=x&xsig=y&akid=b") == "$subscribe_arguments_problem"
    arguments = nginx_map(config, '"$arg_exp:$arg_kid:$arg_sig"')
    assert evaluate(arguments, "1767225600:app-1:abc") == ""
    for missing in (":app-1:abc", "1767225600::abc", "1767225600:app-1:", "::"):
        assert evaluate(arguments, missing) == "unsigned", missing


def test_the_signatures_are_compared_after_blinding_as_hex(config):
    signature = nginx_map(config, '"$subscribe_expected_blinded:$subscribe_given_blinded"')
    same = "0123456789abcdef0123456789abcdef"
    assert evaluate(signature, f"{same}:{same}") == ""
    assert evaluate(signature, f"{same}:{same[:-1]}8") == "bad signature"
    assert evaluate(signature, ":") == "bad signature"


KEYS = [
    {"id": "app-1", "secret": "ESIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA="},
    {
        "id": "firehose.acme",
        "secret": "EyIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA=",
        "channels": ["firehose-acme"],
    },
    {"id": "nothing", "secret": "FCIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA=", "channels": []},
]


def test_a_key_opens_its_channels_and_an_unscoped_key_defers_to_the_scoped_prefixes():
    scope = nginx_map(render_key_set({"push_stream_subscribe_keys": KEYS}), '"$arg_kid $signed_channel"')
    assert evaluate(scope, "firehose.acme firehose-acme") == ""
    assert evaluate(scope, "firehose.acme firehose-ACME") == "key not valid for this channel"
    assert evaluate(scope, "firehose.acme firehose-acme-2") == "key not valid for this channel"
    assert evaluate(scope, "firehoseXacme firehose-acme") == "unknown key"
    assert evaluate(scope, "APP-1 firehose-acme") == "unknown key"  # the secret's map is case-blind
    assert evaluate(scope, "nothing private-ada") == "key not valid for this channel"
    assert evaluate(scope, "app-1 private-ada") == "$subscribe_scoped_channel_problem"


def test_scoped_prefixes_need_a_scoped_key(config):
    scoped = nginx_map(config, "$signed_channel")
    assert evaluate(scoped, "firehose-acme") == "channel needs a key scoped to it"
    assert evaluate(scoped, "private-ada") == ""


def test_a_short_secret_renders_a_line_nginx_refuses():
    rendered = render_key_set({"push_stream_subscribe_keys": [{"id": "app-1", "secret": "c2hvcnQ="}]})
    assert "\nkey_app-1_needs_a_secret_of_32_bytes_or_more_in_base64;\n" in rendered
    assert "needs_a_secret" not in render_key_set({"push_stream_subscribe_keys": KEYS})
