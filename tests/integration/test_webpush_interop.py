"""Interoperability with independent Web Push implementations from PyPI (test-only, pinned in
tests/requirements-tools.txt): http_ece (RFC 8188/8291), py_vapid and PyJWT (RFC 8292), pywebpush.

Both ways: what the glue makes, they read and verify; what they make, the glue's code reads,
and the test push service (support/push_service.py) accepts.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from realtime_glue.webpush import ece
from realtime_glue.webpush.base64url import b64url_decode, b64url_encode
from realtime_glue.webpush.request import build_request
from realtime_glue.webpush.subscriptions import parse_subscription
from realtime_glue.webpush.vapid import VapidKey, VapidSigner
from support.push_service import PushService
from support.tls import make_certificates

http_ece = pytest.importorskip("http_ece", reason="http-ece is not installed (tests/requirements-tools.txt)")
pyjwt = pytest.importorskip("jwt", reason="PyJWT is not installed (tests/requirements-tools.txt)")
py_vapid = pytest.importorskip("py_vapid", reason="py-vapid is not installed (tests/requirements-tools.txt)")
pywebpush = pytest.importorskip(
    "pywebpush", reason="pywebpush is not installed (tests/requirements-tools.txt)"
)
requests = pytest.importorskip("requests")


@pytest.fixture
def certificates():
    return make_certificates(Path(tempfile.mkdtemp(prefix="webpush-interop-")))


@pytest.fixture
def push_service(certificates):
    service = PushService(certificates).start()
    yield service
    service.stop()


def authorization_fields(value: str) -> dict:
    scheme, _, params = value.partition(" ")
    assert scheme == "vapid"
    return dict(p.strip().split("=", 1) for p in params.split(","))


def test_http_ece_opens_what_the_glue_encrypts():
    browser = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    body = ece.encrypt(b'{"text":"for your eyes"}', ece.public_bytes(browser), auth)
    opened = http_ece.decrypt(body, private_key=browser, auth_secret=auth, version="aes128gcm")
    assert opened == b'{"text":"for your eyes"}'


def test_pyjwt_and_py_vapid_verify_the_glues_vapid_signature():
    key = VapidKey.generate()
    fields = authorization_fields(
        VapidSigner(key, "mailto:ops@example.org").authorization("https://push.example")
    )
    public = ece.load_public_key(b64url_decode(fields["k"]))
    claims = pyjwt.decode(fields["t"], key=public, algorithms=["ES256"], audience="https://push.example")
    assert claims["sub"] == "mailto:ops@example.org" and claims["exp"] - time.time() <= 24 * 3600
    signed, _, signature = fields["t"].rpartition(".")
    checker = py_vapid.Vapid02.from_raw_public(fields["k"].encode())
    assert checker.verify_token(validation_token=signed.encode(), verification_token=signature)


def test_the_glue_opens_what_http_ece_and_pywebpush_encrypt():
    browser = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    sender = ec.generate_private_key(ec.SECP256R1())
    by_http_ece = http_ece.encrypt(
        b"from http_ece",
        private_key=sender,
        dh=ece.public_bytes(browser),
        auth_secret=auth,
        version="aes128gcm",
    )
    assert ece.decrypt(by_http_ece, browser, auth) == b"from http_ece"
    # Several records (a record size of 40 bytes), as RFC 8188 allows.
    long = http_ece.encrypt(
        b"x" * 200,
        private_key=sender,
        dh=ece.public_bytes(browser),
        auth_secret=auth,
        version="aes128gcm",
        rs=40,
    )
    assert ece.decrypt(long, browser, auth) == b"x" * 200
    subscription = {
        "endpoint": "https://push.example/x",
        "keys": {"p256dh": b64url_encode(ece.public_bytes(browser)), "auth": b64url_encode(auth)},
    }
    by_pywebpush = pywebpush.WebPusher(subscription).encode(b"from pywebpush")["body"]
    assert ece.decrypt(by_pywebpush, browser, auth) == b"from pywebpush"


def test_key_files_are_interchangeable_with_py_vapid(tmp_path):
    theirs = py_vapid.Vapid02()
    theirs.generate_keys()
    theirs.save_key(str(tmp_path / "theirs.pem"))
    os.chmod(tmp_path / "theirs.pem", 0o600)
    ours = VapidKey.from_file(str(tmp_path / "theirs.pem"))
    assert ours.public_bytes == ece.public_bytes(theirs.private_key)
    (tmp_path / "ours.pem").write_bytes(VapidKey.generate().pem())
    assert py_vapid.Vapid02.from_file(str(tmp_path / "ours.pem")).private_key is not None


def test_what_pywebpush_sends_is_accepted_by_the_test_push_service_and_opened_by_the_glue(
    push_service, certificates, tmp_path
):
    browser = push_service.new_browser("phone")
    # The subscription as the glue stores it (checked by parse_subscription) is what pywebpush takes.
    stored = parse_subscription(browser.subscription(), endpoint_hosts=["127.0.0.1"])
    key_file = tmp_path / "vapid.pem"
    key_file.write_bytes(VapidKey.generate().pem())
    session = requests.Session()
    session.trust_env = False  # else a REQUESTS_CA_BUNDLE in the environment overrides `verify`
    session.verify = str(certificates.ca)
    response = pywebpush.webpush(
        stored.as_push_subscription(),
        data=json.dumps({"text": "sent by pywebpush"}),
        vapid_private_key=str(key_file),
        vapid_claims={"sub": "mailto:ops@example.org"},
        ttl=60,
        requests_session=session,
    )
    assert response.status_code == 201
    (received,) = push_service.received("phone")
    assert received.problems == [] and received.claims["aud"] == push_service.origin
    assert json.loads(ece.decrypt(received.body, browser.private_key, browser.auth)) == {
        "text": "sent by pywebpush"
    }


def test_a_request_the_glue_builds_is_one_http_ece_and_pyjwt_accept(push_service):
    """The glue's request, built and signed as the stage does, checked by the independent libraries."""
    browser = push_service.new_browser("laptop")
    stored = parse_subscription(browser.subscription(), endpoint_hosts=["127.0.0.1"])
    request = build_request(
        "ada", stored, b'{"text":"hi"}', 60, "low", "t" * 32, "job", int(time.time() * 1000)
    )
    fields = authorization_fields(
        VapidSigner(VapidKey.generate(), "mailto:ops@example.org").authorization(stored.origin)
    )
    public = ece.load_public_key(b64url_decode(fields["k"]))
    assert pyjwt.decode(fields["t"], key=public, algorithms=["ES256"], audience=push_service.origin)
    opened = http_ece.decrypt(request.body, private_key=browser.private_key, auth_secret=browser.auth)
    assert opened == b'{"text":"hi"}'
