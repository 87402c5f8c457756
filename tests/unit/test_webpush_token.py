"""Subscription tokens: the application signs a user id and an expiry; nothing else passes."""

from __future__ import annotations

import pytest

from realtime_glue.webpush.token import InvalidToken, check_token, make_token

KEY = bytes(range(32))


def test_a_token_names_its_user_until_it_expires():
    token = make_token(KEY, "ada@example.org", expires=2_000)
    assert check_token(KEY, token, now=1_999) == "ada@example.org"
    with pytest.raises(InvalidToken, match="expired"):
        check_token(KEY, token, now=2_001)


def test_a_token_for_one_user_cannot_be_turned_into_one_for_another():
    user, expires, mac = make_token(KEY, "ada", expires=2_000).split(".")
    other_user = make_token(KEY, "bob", expires=2_000).split(".")[0]
    with pytest.raises(InvalidToken, match="signature"):
        check_token(KEY, f"{other_user}.{expires}.{mac}", now=1_000)
    with pytest.raises(InvalidToken, match="signature"):
        check_token(KEY, f"{user}.9{expires}.{mac}", now=1_000)  # a later expiry
    with pytest.raises(InvalidToken, match="signature"):
        check_token(bytes(32), make_token(KEY, "ada", 2_000), now=1_000)  # another key


@pytest.mark.parametrize("token", ["", "a.b", "a.1.b.c", "YWRh.x1.AAAA", "!!!.1.AAAA", "YWRh.\u00b2.AAAA"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(InvalidToken):
        check_token(KEY, token, now=0)


def test_user_ids_are_checked():
    with pytest.raises(ValueError):
        make_token(KEY, "", 1)
    with pytest.raises(ValueError):
        make_token(KEY, "a\nb", 1)
    with pytest.raises(ValueError):
        make_token(KEY, "x" * 129, 1)


def test_the_readmes_recipe_for_applications_makes_tokens_the_glue_takes():
    import base64
    import hashlib
    import hmac
    import time

    def push_token(key: bytes, user: str, lifetime: int = 86400) -> str:  # as in README.md, Web Push
        b64url = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
        expires = int(time.time()) + lifetime
        signed = b"\0".join([b"realtime-glue webpush v1", user.encode(), str(expires).encode()])
        return f"{b64url(user.encode())}.{expires}.{b64url(hmac.new(key, signed, hashlib.sha256).digest())}"

    assert check_token(KEY, push_token(KEY, "ada@example.org")) == "ada@example.org"
