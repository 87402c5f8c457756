"""Web Push message encryption (RFC 8291 over RFC 8188 aes128gcm): the RFC's own example, byte for byte."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from realtime_glue.webpush import ece
from realtime_glue.webpush.base64url import b64url_decode, b64url_encode

# RFC 8291 Appendix A (published example values, not secrets).
PLAINTEXT = b"When I grow up, I want to be a watermelon"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
MESSAGE = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8w"
    "EqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def private_key(b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(b64), "big"), ec.SECP256R1())


def test_encrypting_the_rfc_example_gives_the_rfc_message():
    body = ece.encrypt(
        PLAINTEXT,
        b64url_decode(UA_PUBLIC),
        b64url_decode(AUTH),
        salt=b64url_decode(SALT),
        sender_key=private_key(AS_PRIVATE),
    )
    assert b64url_encode(body) == MESSAGE


def test_the_browser_side_opens_the_rfc_message():
    assert ece.decrypt(b64url_decode(MESSAGE), private_key(UA_PRIVATE), b64url_decode(AUTH)) == PLAINTEXT


def browser():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, ece.public_bytes(key), b"sixteen byte key"


def test_every_message_has_its_own_salt_and_sender_key_and_round_trips():
    key, public, auth = browser()
    first, second = ece.encrypt(b"same text", public, auth), ece.encrypt(b"same text", public, auth)
    assert first[:16] != second[:16] and first[21:86] != second[21:86]
    assert ece.decrypt(first, key, auth) == ece.decrypt(second, key, auth) == b"same text"


def test_the_largest_message_fits_the_4096_bytes_push_services_must_take():
    key, public, auth = browser()
    body = ece.encrypt(b"x" * ece.MAX_PLAINTEXT_BYTES, public, auth)
    assert len(body) == ece.MAX_BODY_BYTES == 4096
    assert ece.decrypt(body, key, auth) == b"x" * ece.MAX_PLAINTEXT_BYTES
    with pytest.raises(ValueError, match="do not fit one push message"):
        ece.encrypt(b"x" * (ece.MAX_PLAINTEXT_BYTES + 1), public, auth)


def test_another_browser_or_a_changed_byte_cannot_open_it():
    key, public, auth = browser()
    body = ece.encrypt(b"for one browser only", public, auth)
    other, _, _ = browser()
    with pytest.raises(ece.DecryptionError):
        ece.decrypt(body, other, auth)
    with pytest.raises(ece.DecryptionError):
        ece.decrypt(body, key, b"another auth 16b")
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(ece.DecryptionError):
        ece.decrypt(tampered, key, auth)


def test_keys_that_are_not_p256_points_are_refused():
    _, public, auth = browser()
    with pytest.raises(ValueError, match="65-byte"):
        ece.encrypt(b"hi", public[:33], auth)
    with pytest.raises(ValueError):
        ece.encrypt(b"hi", b"\x04" + b"\x01" * 64, auth)  # not on the curve
    with pytest.raises(ValueError, match="auth secret"):
        ece.encrypt(b"hi", public, auth[:8])
