"""VAPID (RFC 8292): an ES256 JWT for the push service's origin, and the Authorization header around it."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from realtime_glue.errors import ConfigError
from realtime_glue.webpush import ece
from realtime_glue.webpush.base64url import b64url_decode
from realtime_glue.webpush.vapid import MAX_JWT_LIFETIME, VapidKey, VapidSigner, check_subject


def parse_authorization(value: str) -> tuple[str, str]:
    scheme, _, params = value.partition(" ")
    assert scheme == "vapid"
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    return fields["t"], fields["k"]


def verify_es256(jwt: str, public: bytes) -> dict:
    """What a push service does: check the signature with the k= key, read the claims."""
    head, claims, signature = jwt.split(".")
    raw = b64url_decode(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    ece.load_public_key(public).verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    assert json.loads(b64url_decode(head)) == {"typ": "JWT", "alg": "ES256"}
    return json.loads(b64url_decode(claims))


def test_the_header_carries_a_jwt_for_the_origin_signed_by_the_public_key_it_names():
    key = VapidKey.generate()
    signer = VapidSigner(key, "mailto:ops@example.org", clock=lambda: 1_700_000_000)
    token, public = parse_authorization(signer.authorization("https://fcm.googleapis.com"))
    assert public == key.public_key_b64 and len(b64url_decode(public)) == 65
    claims = verify_es256(token, b64url_decode(public))
    assert claims == {
        "aud": "https://fcm.googleapis.com",
        "exp": 1_700_000_000 + 12 * 3600,
        "sub": "mailto:ops@example.org",
    }


def test_a_jwt_is_reused_per_origin_and_renewed_before_it_expires():
    now = [1_700_000_000.0]
    signer = VapidSigner(VapidKey.generate(), "mailto:ops@example.org", clock=lambda: now[0])
    first = signer.authorization("https://a.example")
    assert signer.authorization("https://a.example") == first
    assert signer.authorization("https://b.example") != first
    now[0] += 11.5 * 3600  # within the last hour of its 12
    renewed = signer.authorization("https://a.example")
    assert renewed != first
    claims = verify_es256(parse_authorization(renewed)[0], signer.key.public_bytes)
    assert claims["exp"] - now[0] <= MAX_JWT_LIFETIME


def test_a_lifetime_over_24_hours_is_refused():
    with pytest.raises(ValueError, match="at most"):
        VapidSigner(VapidKey.generate(), "mailto:a@b.c", lifetime=MAX_JWT_LIFETIME + 1)


def test_the_key_file_round_trips_and_must_be_private(key_file):
    key = VapidKey.generate()
    loaded = VapidKey.from_file(key_file(key.pem(), "vapid.pem"))
    assert loaded.public_key_b64 == key.public_key_b64
    with pytest.raises(ConfigError, match="readable by others"):
        VapidKey.from_file(key_file(key.pem(), "open.pem", mode=0o644))
    with pytest.raises(ConfigError, match=r"vapid_key_file: .*keygen"):
        VapidKey.from_file(key_file(b"not a key", "junk.pem"))
    other_curve = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        VapidKey(other_curve)


@pytest.mark.parametrize(
    ("subject", "ok"),
    [("mailto:ops@example.org", True), ("https://example.org/contact", True), ("ops@example.org", False)],
)
def test_the_subject_is_a_contact(subject, ok):
    assert (check_subject(subject) is None) == ok
