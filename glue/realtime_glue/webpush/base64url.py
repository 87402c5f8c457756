"""URL-safe base64 without padding: how Web Push writes keys, salts and tokens."""

from __future__ import annotations

import base64
import binascii

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decodes with or without padding; ValueError on anything else."""
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("not base64url: non-ASCII characters") from None
    text = text.strip().rstrip(b"=")
    if text.translate(None, _ALPHABET):
        raise ValueError("not base64url: characters outside A-Z a-z 0-9 - _")
    try:
        return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None
