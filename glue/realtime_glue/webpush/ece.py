"""Web Push message encryption: RFC 8291's keys over RFC 8188's aes128gcm content coding.

The application server makes a fresh ECDH P-256 key pair for every message.
Its shared secret with the browser's `p256dh` key, mixed through HKDF-SHA256
with the browser's 16-byte `auth` secret and both public keys, gives the
AES-128-GCM content key and nonce. The body is one record:

    salt (16) | record size (4) | key id length (1) = 65 | our public key (65) | ciphertext + tag

Only the browser holding the subscription's private key can read it: the push
service in between sees the length and nothing else. `decrypt` is what the
browser does; the test push service and the interop tests use it.
"""

from __future__ import annotations

import functools
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import GlueError

KEY_INFO = b"WebPush: info\x00"
CEK_INFO = b"Content-Encoding: aes128gcm\x00"
NONCE_INFO = b"Content-Encoding: nonce\x00"
SALT_BYTES = 16
PUBLIC_KEY_BYTES = 65
AUTH_SECRET_BYTES = 16
TAG_BYTES = 16
RECORD_SIZE = 4096
HEADER_BYTES = SALT_BYTES + 4 + 1 + PUBLIC_KEY_BYTES
# Push services must accept bodies of 4096 bytes (RFC 8291 section 4) and the
# whole message must fit one record: plaintext, the 0x02 delimiter, the tag.
MAX_BODY_BYTES = 4096
MAX_PLAINTEXT_BYTES = MAX_BODY_BYTES - HEADER_BYTES - TAG_BYTES - 1


class DecryptionError(GlueError, ValueError):
    """The body is not an aes128gcm message this key can open."""


def public_bytes(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The 65-byte uncompressed point of a P-256 key pair's public half."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def load_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its 65-byte uncompressed point; ValueError if it is not one."""
    if len(raw) != PUBLIC_KEY_BYTES or raw[0] != 4:
        raise ValueError(f"expected a 65-byte uncompressed P-256 point, got {len(raw)} bytes")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


# A user's browsers get message after message: keep their parsed keys (a key
# object is immutable) instead of parsing and checking the point every time.
_browser_key = functools.lru_cache(maxsize=8192)(load_public_key)


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869) for at most 32 bytes: extract, then one block of expand.

    The stdlib's HMAC, not python3-cryptography's HKDF: the same function,
    and on Debian 12's cryptography 38 the latter cost about 100 us of the
    glue's CPU per derivation, three per message."""
    if length > 32:
        raise ValueError("one HKDF-SHA256 block gives at most 32 bytes")
    prk = hmac.digest(salt, ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")[:length]


def _content_key_and_nonce(
    ecdh_secret: bytes, auth_secret: bytes, ua_public: bytes, as_public: bytes, salt: bytes
) -> tuple[bytes, bytes]:
    ikm = _hkdf(auth_secret, ecdh_secret, KEY_INFO + ua_public + as_public, 32)
    return _hkdf(salt, ikm, CEK_INFO, 16), _hkdf(salt, ikm, NONCE_INFO, 12)


def encrypt(
    plaintext: bytes,
    ua_public: bytes,
    auth_secret: bytes,
    salt: bytes | None = None,
    sender_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """The aes128gcm body for the browser whose subscription keys are (ua_public, auth_secret).

    `salt` and `sender_key` are fresh random ones unless given (only tests give them).
    """
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise ValueError(
            f"{len(plaintext)} bytes do not fit one push message ({MAX_PLAINTEXT_BYTES} at most)"
        )
    if len(auth_secret) != AUTH_SECRET_BYTES:
        raise ValueError(f"the auth secret must be {AUTH_SECRET_BYTES} bytes, got {len(auth_secret)}")
    ua_key = _browser_key(bytes(ua_public))
    sender_key = sender_key or ec.generate_private_key(ec.SECP256R1())
    as_public = public_bytes(sender_key)
    salt = salt or os.urandom(SALT_BYTES)
    key, nonce = _content_key_and_nonce(
        sender_key.exchange(ec.ECDH(), ua_key), auth_secret, ua_public, as_public, salt
    )
    record = AESGCM(key).encrypt(nonce, plaintext + b"\x02", None)
    return salt + struct.pack("!IB", RECORD_SIZE, PUBLIC_KEY_BYTES) + as_public + record


def decrypt(body: bytes, ua_private: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """The plaintext of an aes128gcm body, as the browser with `ua_private` reads it.

    Any number of records of the declared size; each ends with its delimiter
    (0x01, the last 0x02) and optional zero padding.
    """
    if len(body) < SALT_BYTES + 5:
        raise DecryptionError(f"body of {len(body)} bytes is shorter than the aes128gcm header")
    salt = body[:SALT_BYTES]
    record_size, id_length = struct.unpack("!IB", body[SALT_BYTES : SALT_BYTES + 5])
    if id_length != PUBLIC_KEY_BYTES:
        raise DecryptionError(f"key id of {id_length} bytes; Web Push sends the 65-byte sender key")
    if record_size <= TAG_BYTES + 1:
        raise DecryptionError(f"record size {record_size} is too small")
    start = SALT_BYTES + 5 + id_length
    as_public = body[SALT_BYTES + 5 : start]
    try:
        as_key = load_public_key(as_public)
    except ValueError as exc:
        raise DecryptionError(f"sender key: {exc}") from None
    content = body[start:]
    if not content:
        raise DecryptionError("no record after the header")
    key, nonce = _content_key_and_nonce(
        ua_private.exchange(ec.ECDH(), as_key), auth_secret, public_bytes(ua_private), as_public, salt
    )
    aead = AESGCM(key)
    records = [content[i : i + record_size] for i in range(0, len(content), record_size)]
    plain = []
    for sequence, record in enumerate(records):
        iv = (int.from_bytes(nonce, "big") ^ sequence).to_bytes(12, "big")
        try:
            opened = aead.decrypt(iv, record, None).rstrip(b"\x00")
        except InvalidTag:
            raise DecryptionError(
                f"record {sequence} does not open with this key (tampered or not ours)"
            ) from None
        last = sequence == len(records) - 1
        if not opened or opened[-1] != (2 if last else 1):
            wanted = "final delimiter 0x02" if last else "delimiter 0x01"
            raise DecryptionError(f"record {sequence} does not end with its {wanted}")
        plain.append(opened[:-1])
    return b"".join(plain)
