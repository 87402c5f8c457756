"""Who may register a push subscription: a token the application signs for one user.

    token = base64url(user id) "." expiry (unix seconds) "." base64url(HMAC-SHA256(key, message))
    message = "realtime-glue webpush v1" NUL user id NUL expiry

The key is 32 bytes in a file only the application and the glue hold. The
application puts a token for the signed-in user into its page; the
subscription endpoint stores a subscription under the user the token names,
and nothing in the request body can name another: one user cannot register
for another, and a token stops working at its expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from ..errors import GlueError
from .base64url import b64url_decode, b64url_encode

KEY_BYTES = 32
MAX_USER_LENGTH = 128
_CONTEXT = b"realtime-glue webpush v1"


class InvalidToken(GlueError, ValueError):
    pass


def user_problem(user) -> str | None:
    """Why `user` cannot be a user id, or None."""
    if not isinstance(user, str) or not user:
        return f"a user id must be a non-empty string, got {user!r}"
    if len(user) > MAX_USER_LENGTH:
        return f"a user id has at most {MAX_USER_LENGTH} characters, got {len(user)}"
    if any(ord(c) < 32 or c == "\x7f" for c in user):
        return "a user id must not contain control characters"
    return None


def _mac(key: bytes, user: str, expires: int) -> bytes:
    message = b"\0".join((_CONTEXT, user.encode(), str(expires).encode()))
    return hmac.new(key, message, hashlib.sha256).digest()


def make_token(key: bytes, user: str, expires: int) -> str:
    problem = user_problem(user)
    if problem:
        raise ValueError(problem)
    return f"{b64url_encode(user.encode())}.{int(expires)}.{b64url_encode(_mac(key, user, int(expires)))}"


def check_token(key: bytes, token: str, now: float | None = None) -> str:
    """The user id the token was made for; InvalidToken if it is forged, malformed or expired."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or not (parts[1].isascii() and parts[1].isdigit()):
        raise InvalidToken("malformed token")
    try:
        user = b64url_decode(parts[0]).decode()
        mac = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed token") from None
    expires = int(parts[1])
    if user_problem(user) or not hmac.compare_digest(mac, _mac(key, user, expires)):
        raise InvalidToken("token signature does not match")
    if expires < (time.time() if now is None else now):
        raise InvalidToken("token expired")
    return user
