"""One push message for one subscription: the encrypted body and the RFC 8030 headers.

    TTL        seconds the push service keeps the message for an offline browser
    Urgency    very-low | low | normal | high (a phone on battery may wait for "normal")
    Topic      a pending message with the same topic is replaced, not queued: a
               burst of comments on one thread reaches a sleeping phone as one
               notification. At most 32 URL-safe base64 characters; we use an
               HMAC of the thread, so the push service cannot tell which thread
               it is (a plain hash of "article-42" would be easy to guess).

A request that must wait (429, 5xx) is kept in its origin's backlog as a
record: encrypted already, so no plaintext waits in Redis, and its TTL counts
from when it was first queued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from . import ece
from .base64url import b64url_encode
from .subscriptions import Subscription, endpoint_origin

URGENCIES = ("very-low", "low", "normal", "high")
MAX_TOPIC_LENGTH = 32


class TopicMaker:
    """Topic header values for threads: HMAC-SHA256 under a key of our own, base64url, 32 characters."""

    def __init__(self, key: bytes):
        self.key = hashlib.sha256(b"realtime-glue webpush topic\0" + key).digest()

    def topic(self, thread: str) -> str:
        return b64url_encode(hmac.new(self.key, thread.encode(), hashlib.sha256).digest())[:MAX_TOPIC_LENGTH]


@dataclass
class PushRequest:
    user: str
    subscription_id: str
    endpoint: str
    body: bytes
    ttl: int
    urgency: str
    topic: str | None
    job_id: str
    queued_ms: int

    @property
    def origin(self) -> str:
        return endpoint_origin(self.endpoint)

    def remaining_ttl(self, now_ms: int) -> int:
        """The TTL left after waiting since it was queued (0 or less: expired)."""
        return self.ttl - max(0, now_ms - self.queued_ms) // 1000

    def headers(self, authorization: str, now_ms: int) -> dict[str, str]:
        headers = {
            "TTL": str(max(0, self.remaining_ttl(now_ms))),
            "Urgency": self.urgency,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": authorization,
        }
        if self.topic:
            headers["Topic"] = self.topic
        return headers

    def to_record(self) -> str:
        record = {
            "user": self.user,
            "sub": self.subscription_id,
            "endpoint": self.endpoint,
            "body": base64.b64encode(self.body).decode(),
            "ttl": self.ttl,
            "urgency": self.urgency,
            "topic": self.topic,
            "job": self.job_id,
            "queued_ms": self.queued_ms,
        }
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def from_record(cls, text: str | bytes) -> PushRequest:
        r = json.loads(text)
        return cls(
            r["user"],
            r["sub"],
            r["endpoint"],
            base64.b64decode(r["body"]),
            int(r["ttl"]),
            r["urgency"],
            r.get("topic"),
            r.get("job", ""),
            int(r["queued_ms"]),
        )


def build_request(
    user: str,
    subscription: Subscription,
    plaintext: bytes,
    ttl: int,
    urgency: str,
    topic: str | None,
    job_id: str,
    now_ms: int,
) -> PushRequest:
    body = ece.encrypt(plaintext, subscription.p256dh, subscription.auth)
    return PushRequest(
        user, subscription.id, subscription.endpoint, body, ttl, urgency, topic, job_id, now_ms
    )
