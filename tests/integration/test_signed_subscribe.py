"""Signed subscribe URLs checked by real nginx (nginx/push-stream.conf with our module,
nginx/subscribe-signature/), rendered with the role's defaults and key set: URLs
minted by realtime_glue.signing open private channels on every transport, on both
flavours, and across a failover; everything else gets 403 and nothing else."""

from __future__ import annotations

import base64
import re
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from push_node import Background, PushNode, ServerTLS
from tls import TestCA

from realtime_glue.signing import KeySet, SignedSubscription, SubscribeKey, sign
from support.glue_process import wait_until

pytestmark = pytest.mark.timeout(120)
STORED = (200, 201, 202)

APP = SubscribeKey("app-1", b"\x11" * 32)
APP_NEXT = SubscribeKey("app-2", b"\x12" * 32)
ACME = SubscribeKey("firehose-acme", b"\x13" * 32, ("firehose-acme",))
GLOBEX = SubscribeKey("firehose-globex", b"\x14" * 32, ("firehose-globex",))


def role_keys(*keys: SubscribeKey) -> list[dict]:
    """push_stream_subscribe_keys as an inventory gives them."""
    return [
        {"id": key.id, "secret": base64.b64encode(key.secret).decode()}
        | ({"channels": list(key.channels)} if key.channels else {})
        for key in keys
    ]


def key_set(*keys: SubscribeKey) -> KeySet:
    """What the application holds: the same keys."""
    return KeySet({key.id: key for key in keys}, ("firehose-",))


KEYS = key_set(APP, APP_NEXT, ACME, GLOBEX)
NODE_KEYS = {"push_stream_subscribe_keys": role_keys(APP, APP_NEXT, ACME, GLOBEX)}


@pytest.fixture(scope="module", params=["push_stream", "nchan"])
def node(request):
    with PushNode(request.param, overrides=NODE_KEYS) as started:
        yield started


@pytest.fixture
def private():
    return f"private-{uuid.uuid4().hex[:12]}"


def signed(channel: str, ttl: int = 300, key_id: str = "app-1", **options) -> SignedSubscription:
    return sign(KEYS, channel, ttl, key_id=key_id, **options)


def target(subscription: SignedSubscription) -> str:
    """What the helpers put after /<transport>/: the channel and the signed query."""
    return f"{subscription.channel}?{subscription.query}"


def status_of(node: PushNode, path: str) -> int:
    """The status a subscriber gets (without waiting for the stream's end)."""
    conn = node._connection(5, None)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def stream_lines(node: PushNode, path: str, count: int) -> list[str]:
    """The first `count` non-empty lines of a streaming subscription (/sub/)."""
    conn = node._connection(10, None)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        lines = []
        while len(lines) < count:
            line = response.readline().decode().strip()
            if line:
                lines.append(line)
        return lines
    finally:
        conn.close()


# --- a signed URL opens a private channel on every transport ---------------------------------


def test_eventsource_with_a_signed_url_receives_the_private_channels_messages(node, private):
    with node.events(target(signed(private))) as stream:
        node.wait_for_subscribers(private)
        assert node.publish(private, "for ada only", event_id="p-1") in STORED
        event = stream.next_event()
    assert event.data == "for ada only"


def test_websocket_with_a_signed_url_receives_the_private_channels_messages(node, private):
    with node.websocket(target(signed(private, transport="ws"))) as websocket:
        node.wait_for_subscribers(private)
        assert node.publish(private, "over websocket", event_id="p-1") in STORED
        assert websocket.receive() == "over websocket"


def test_long_polling_with_a_signed_url_receives_the_private_channels_message(node, private):
    subscription = signed(private)
    poll = Background(lambda: node.long_poll(target(subscription)))
    node.wait_for_subscribers(private)
    assert node.publish(private, "long-polled", event_id="p-1") in STORED
    status, _, body = poll.result()
    assert (status, body.decode().strip()) == (200, "long-polled")


def test_streaming_with_a_signed_url_receives_the_private_channels_messages(node, private):
    lines = Background(lambda: stream_lines(node, f"/sub/{target(signed(private, transport='sub'))}", 2))
    node.wait_for_subscribers(private)
    node.publish(private, "first")
    node.publish(private, "second")
    assert lines.result() == ["first", "second"]


def test_a_public_channel_needs_no_signature(node):
    channel = f"news-{uuid.uuid4().hex[:8]}"
    with node.events(channel) as stream:
        node.wait_for_subscribers(channel)
        node.publish(channel, "for everyone", event_id="n-1")
        assert stream.next_event().data == "for everyone"


def test_a_customers_own_key_opens_its_firehose_channel(node):
    with node.events(target(signed("firehose-acme", key_id=""))) as stream:
        node.wait_for_subscribers("firehose-acme")
        node.publish("firehose-acme", "acme's copy", event_id="f-1")
        assert stream.next_event().data == "acme's copy"


# --- everything else: 403 and nothing else ---------------------------------------------------


def tampered(query: str) -> str:
    head, sig = query.rsplit("sig=", 1)
    return f"{head}sig={'A' if sig[0] != 'A' else 'B'}{sig[1:]}"


def refusals(private: str) -> dict[str, str]:
    """Each bad request for `private` on EventSource, as path + query."""
    good = signed(private)
    other = signed(private + "-other")
    bound_ws = signed(private, transport="ws")
    expired = sign(KEYS, private, 60, key_id="app-1", now=time.time() - 3600)
    return {
        "missing": f"/ev/{private}",
        "expired (a replayed URL)": f"/ev/{private}?{expired.query}",
        "tampered signature": f"/ev/{private}?{tampered(good.query)}",
        "signature for another channel": f"/ev/{private}?{other.query}",
        "expiry moved later": f"/ev/{private}?{good.query.replace('exp=', 'exp=1')}",
        "bound to websocket, used on eventsource": f"/ev/{private}?{bound_ws.query}",
        "transport binding removed": f"/ev/{private}?{bound_ws.query.replace('&tr=ws', '')}",
        "unknown key id": f"/ev/{private}?{good.query.replace('kid=app-1', 'kid=app-9')}",
        "key id in other letters": f"/ev/{private}?{good.query.replace('kid=app-1', 'kid=APP-1')}",
        "other key's id": f"/ev/{private}?{good.query.replace('kid=app-1', 'kid=app-2')}",
        "signature twice, the good one second": f"/ev/{private}?{tampered(good.query)}&{good.query}",
    }


def assert_refused(node: PushNode, channel: str, path: str, what: str, headers=None) -> None:
    status, _, body = node.request("GET", path, headers=headers or {}, timeout=5)
    assert status == 403, f"{what}: HTTP {status} {body[:200]!r}"
    assert b"secret" not in body and b"403" in body, (
        f"{what}: {body!r}"
    )  # nginx's own 403 page, no channel data
    assert node.subscribers(channel) == 0, what


def test_every_bad_signature_gets_403_and_nothing_else(node, private):
    node.publish(private, "secret", event_id="s-1")  # stored: a subscriber let in would get it
    for what, path in refusals(private).items():
        assert_refused(node, private, path, what, headers={"Last-Event-ID": "0"})


def test_the_access_log_says_why_a_private_subscriber_was_refused_and_nothing_for_public_ones(node, private):
    good = signed(private)
    # /ws/ without an upgrade: the module answers at once, after the check let it through.
    for path in (
        f"/ev/{private}",
        f"/ev/{private}?{tampered(good.query)}",
        f"/ws/{private}?{good.query}",
        "/ws/public-log",
    ):
        node.request("GET", path, timeout=5)
    deadline = time.monotonic() + 5
    while "/ws/public-log" not in node.access_log:  # nginx writes the line after the response
        assert time.monotonic() < deadline, node.access_log
        time.sleep(0.05)
    lines = {line.split('"')[1]: line for line in node.access_log.splitlines() if '"GET /' in line}
    assert lines[f"GET /ev/{private} HTTP/1.1"].endswith(' refused="unsigned"')
    assert lines[f"GET /ev/{private}?{tampered(good.query)} HTTP/1.1"].endswith(' refused="bad signature"')
    assert lines[f"GET /ws/{private}?{good.query} HTTP/1.1"].endswith(' refused=""')
    assert "refused=" not in lines["GET /ws/public-log HTTP/1.1"]


# Why each of refusals() is refused, as the access log says ($subscribe_refused).
REASONS = {
    "missing": "unsigned",
    "expired (a replayed URL)": "expired",
    "tampered signature": "bad signature",
    "signature for another channel": "bad signature",
    "expiry moved later": "malformed expiry",
    "bound to websocket, used on eventsource": "signed for transport ws",
    "transport binding removed": "bad signature",
    "unknown key id": "unknown key",
    "key id in other letters": "unknown key",
    "other key's id": "bad signature",
    "signature twice, the good one second": "repeated exp",
}


def logged_reasons(node: PushNode, paths: list[str]) -> dict[str, str]:
    """The refused="..." of each path's access log line, once nginx wrote them all."""
    deadline = time.monotonic() + 5
    while True:
        reasons = {}
        for line in node.access_log.splitlines():
            if '"GET ' in line and ' refused="' in line:
                reasons[line.split('"')[1].split(" ")[1]] = line.rsplit(' refused="', 1)[1][:-1]
        if all(path in reasons for path in paths):
            return {path: reasons[path] for path in paths}
        assert time.monotonic() < deadline, node.access_log
        time.sleep(0.05)


def test_the_access_log_names_the_reason_of_every_refusal(node, private):
    paths = refusals(private)
    assert set(paths) == set(REASONS)
    for path in paths.values():
        assert node.request("GET", path, timeout=5)[0] == 403, path
    acme = signed("firehose-acme", key_id="")
    app_on_firehose = sign(KeySet({"app-1": APP}, ()), "firehose-globex", 60)
    firehose = {
        f"/ev/firehose-globex?{acme.query}": "key not valid for this channel",
        f"/ev/firehose-globex?{app_on_firehose.query}": "channel needs a key scoped to it",
        f"/ev/{private}?exp=1767225600&kid=app-1&sig=x&kid=app-2&exp=1": "repeated exp",
        f"/ev/{private}?kid=app-1&sig=x&exp=1&sig=y&exp=2": "repeated sig",
        f"/ev/{private}?exp=1767225600&kid=app-1": "unsigned",
    }
    for path in firehose:
        assert node.request("GET", path, timeout=5)[0] == 403, path
    logged = logged_reasons(node, [*paths.values(), *firehose])
    assert {what: logged[path] for what, path in paths.items()} == REASONS
    assert {path: logged[path] for path in firehose} == firehose


def test_a_customers_key_opens_no_other_channel_and_the_applications_key_no_firehose(node, private):
    node.publish("firehose-globex", "secret", event_id="s-1")
    acme = signed("firehose-acme", key_id="")
    globex_with_acmes_key = sign(
        KeySet({"firehose-acme": SubscribeKey("firehose-acme", ACME.secret)}, ()), "firehose-globex", 60
    )
    app_on_firehose = sign(KeySet({"app-1": APP}, ()), "firehose-globex", 60)
    for what, path in {
        "acme's URL on globex's channel": f"/ev/firehose-globex?{acme.query}",
        "acme's key signing globex's channel": f"/ev/firehose-globex?{globex_with_acmes_key.query}",
        "the application's key on a firehose channel": f"/ev/firehose-globex?{app_on_firehose.query}",
        "the same, its key id in capitals": "/ev/firehose-globex?"
        + app_on_firehose.query.replace("kid=app-1", "kid=APP-1"),
        "no signature": "/ev/firehose-globex",
    }.items():
        assert_refused(node, "firehose-globex", path, what)


@pytest.mark.parametrize("transport", ["ws", "lp", "sub"])
def test_the_other_transports_refuse_a_bad_signature_too(node, private, transport):
    good = signed(private)
    for what, query in {
        "missing": "",
        "tampered": tampered(good.query),
        "other channel": signed(private + "x").query,
    }.items():
        path = f"/{transport}/{private}" + (f"?{query}" if query else "")
        if transport == "ws":
            assert_refused(
                node,
                private,
                path,
                what,
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
                    "Sec-WebSocket-Version": "13",
                },
            )
        else:
            assert_refused(node, private, path, what)


def test_a_signed_url_works_with_pushstreams_backtrack_suffix(private):
    with PushNode("push_stream", overrides=NODE_KEYS) as node:
        for n in (1, 2, 3):
            node.publish(private, f"m{n}", event_id=f"b-{n}")
        subscription = signed(private)
        with node.events(f"{private}.b2?{subscription.query}") as stream:
            assert [stream.next_event().data for _ in range(2)] == ["m2", "m3"]


# --- keys: a rotation, and a failover to another node ------------------------------------------


def test_during_a_rotation_both_keys_open_and_a_removed_key_stops_opening(private):
    with PushNode(overrides=NODE_KEYS) as node:
        for key_id in ("app-1", "app-2"):
            with node.events(target(signed(private, key_id=key_id))):
                node.wait_for_subscribers(private)
        node.write_key_set(role_keys(APP_NEXT))  # app-1 retired: its URLs stop working
        node.reload()
        old = signed(private, key_id="app-1")
        deadline = time.monotonic() + 10
        while status_of(node, f"/ev/{target(old)}") != 403:  # until the old workers stop accepting
            assert time.monotonic() < deadline, "app-1 still accepted after the reload"
            time.sleep(0.1)
        # The streams above and a probe an old worker let in may still be counted for a moment:
        # the new subscriber must be the one waited for.
        wait_until(lambda: node.subscribers(private) == 0, 10, what="the earlier subscribers gone")
        with node.events(target(signed(private, key_id="app-2"))) as stream:
            node.wait_for_subscribers(private)
            node.publish(private, "after the rotation", event_id="r-1")
            assert stream.next_event().data == "after the rotation"


def test_the_browser_keeps_its_url_across_a_failover_to_another_node(private):
    with PushNode(overrides=NODE_KEYS) as first, PushNode(overrides=NODE_KEYS) as second:
        subscription = signed(private, ttl=600)
        with first.events(target(subscription)) as stream:
            first.wait_for_subscribers(private)
            for n in (1, 2, 3):
                for node in (first, second):
                    assert node.publish(private, f"message {n}", event_id=f"id-{n}") in STORED
            seen = stream.next_event()
        first.stop()  # the node goes away; the browser reconnects elsewhere with the same URL
        with second.events(target(subscription), last_event_id=seen.id) as again:
            missed = [again.next_event() for _ in range(2)]
    assert (seen.id, seen.data) == ("id-1", "message 1")
    assert [(e.id, e.data) for e in missed] == [("id-2", "message 2"), ("id-3", "message 3")]


def test_an_expired_url_is_refused_on_reconnect_even_by_a_node_that_let_it_in(private):
    with PushNode(overrides=NODE_KEYS) as node:
        subscription = sign(KEYS, private, 5, key_id="app-1")  # 4-5 s to open it, even on a slow day
        with node.events(target(subscription)):
            node.wait_for_subscribers(private)
        time.sleep(max(0.0, subscription.expires - time.time()) + 1.1)
        assert_refused(node, private, f"/ev/{target(subscription)}", "the same URL after its expiry")


@pytest.mark.parametrize(
    "keys, problem",
    [
        ([{"id": "app-1", "secret": "c2hvcnQ="}], 'key "app-1" needs a secret of 32 bytes or more, it has 5'),
        ([{"id": "app-1", "secret": "not base64!" * 4}], 'key "app-1": the secret is not base64'),
        (
            [{"id": "app-1", "secret": "ESIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA="}] * 2,
            'key "app-1" is given twice',
        ),
    ],
    ids=["short secret", "not base64", "duplicate key id"],
)
def test_a_key_set_nginx_cannot_load_fails_the_config_check_and_the_running_node_keeps_its_keys(
    private, keys, problem
):
    with PushNode(overrides=NODE_KEYS) as node:
        node.write_key_set(keys)
        with pytest.raises(RuntimeError, match=re.escape(problem)) as refused:
            node.reload()  # nginx -t first, as the role's handler: the reload never happens
        assert keys[0]["secret"] not in str(refused.value)  # nginx names the key, not its secret
        with node.events(target(signed(private))) as stream:  # still the old, good key set
            node.wait_for_subscribers(private)
            node.publish(private, "still open", event_id="k-1")
            assert stream.next_event().data == "still open"


def test_without_private_prefixes_nginx_loads_no_check_and_every_channel_is_public(private):
    with PushNode(overrides={"push_stream_private_channel_prefixes": []}) as node:
        config = node.config_path.read_text()
        assert "subscribe_signature" not in config and "subscribe_refused" not in config
        with node.events(private) as stream:
            node.wait_for_subscribers(private)
            node.publish(private, "public now", event_id="o-1")
            assert stream.next_event().data == "public now"


# --- every public listener: HTTPS and plain HTTP ------------------------------------------------


def test_every_public_listener_checks_the_signature(tmp_path, private):
    """A node serving HTTPS that keeps subscribers on plain HTTP too: both listeners refuse a
    missing or tampered signature on all four transports and open with a signed URL."""
    ca = TestCA.create(tmp_path / "ca")
    certificate = ca.issue(["localhost"], ips=["127.0.0.1"])
    tls = ServerTLS(certificate.certificate_path, certificate.key_path, ca.certificate_path)
    overrides = {**NODE_KEYS, "push_stream_plain_subscribers": True}
    with PushNode(tls=tls, overrides=overrides) as node:
        node.publish(private, "secret", event_id="s-1")
        good = signed(private)
        for listener in ("public", "plain"):
            for transport in ("ev", "ws", "lp", "sub"):
                for what, query in {"missing": "", "tampered": f"?{tampered(good.query)}"}.items():
                    status, _, body = node.request(
                        "GET", f"/{transport}/{private}{query}", timeout=5, listener=listener
                    )
                    assert (status, b"secret" in body) == (403, False), f"{listener} /{transport}/ {what}"
        assert node.subscribers(private) == 0  # no refused request stayed on as a subscriber
        with node.events(target(good)) as stream:  # over HTTPS
            node.wait_for_subscribers(private)
            node.publish(private, "over https", event_id="s-2")
            assert stream.next_event().data == "over https"
