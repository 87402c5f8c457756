"""What a browser's PushSubscription must look like before the glue stores it or POSTs to it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from realtime_glue.webpush import ece
from realtime_glue.webpush.base64url import b64url_encode
from realtime_glue.webpush.subscriptions import (
    InvalidSubscription,
    Subscription,
    endpoint_origin,
    parse_subscription,
)

P256DH = b64url_encode(ece.public_bytes(ec.generate_private_key(ec.SECP256R1())))
AUTH = b64url_encode(b"0123456789abcdef")
FCM = "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bH"


def subscription(endpoint=FCM, p256dh=P256DH, auth=AUTH, **extra):
    return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": p256dh, "auth": auth}, **extra}


def test_a_browser_subscription_is_accepted_and_round_trips():
    parsed = parse_subscription(subscription(), created_ms=5)
    assert parsed.endpoint == FCM and len(parsed.p256dh) == 65 and parsed.auth == b"0123456789abcdef"
    assert parsed.origin == "https://fcm.googleapis.com"
    assert Subscription.from_json(parsed.to_json()) == parsed
    assert parse_subscription(parsed.as_push_subscription(), created_ms=5) == parsed


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
        "https://web.push.apple.com/QGuQyavXutnMH6Ig2uYOJDwA",
        "https://wns2-by3p.notify.windows.com/w/?token=BQYAAAD",
    ],
)
def test_the_push_services_of_todays_browsers_are_known(endpoint):
    assert parse_subscription(subscription(endpoint)).endpoint == endpoint


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (subscription("http://fcm.googleapis.com/fcm/send/x"), "must be https"),
        (subscription("https://10.0.0.5/internal"), "not a known push service"),
        (subscription("https://fcm.googleapis.com.evil.example/x"), "not a known push service"),
        (subscription("https://evilpush.apple.com.example/x"), "not a known push service"),
        (subscription("https://user@fcm.googleapis.com/x"), "user information"),
        (subscription("https://fcm.googleapis.com/x#frag"), "fragment"),
        (subscription("https://fcm.googleapis.com/" + "x" * 2100), "limit is 2048"),
        (subscription("https://fcm.googleapis.com/a b"), "without spaces"),
        (subscription(p256dh=P256DH[:40]), "keys.p256dh must be 65 bytes"),
        (subscription(p256dh=b64url_encode(b"\x04" + b"\x01" * 64)), "not a P-256 public key"),
        (subscription(auth=b64url_encode(b"short")), "keys.auth must be 16 bytes"),
        (subscription(auth="not base64!"), "keys.auth: not base64url"),
        ({"endpoint": FCM}, "keys must be an object"),
        (subscription(padding="x" * 5000), "over 4096 bytes"),
        (["not", "an", "object"], "expected a PushSubscription object"),
    ],
)
def test_anything_else_is_refused_with_the_reason(data, problem):
    with pytest.raises(InvalidSubscription, match=problem):
        parse_subscription(data)


def test_an_operator_can_allow_other_push_services():
    local = subscription("https://127.0.0.1:8443/push/abc")
    assert parse_subscription(local, endpoint_hosts=["127.0.0.1"]).origin == "https://127.0.0.1:8443"
    assert endpoint_origin("https://Push.Example:443/x") == "https://push.example:443"
