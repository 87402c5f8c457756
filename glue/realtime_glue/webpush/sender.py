"""POSTs to push services, and what each answer means (RFC 8030 section 5, RFC 8292).

Push services are many https hosts, one per browser vendor, so this is a
general client: urllib3 (Debian's python3-urllib3) with a pool of keep-alive
connections per origin, cooperative under the glue's gevent monkey-patching.
The push nodes' own pipelined client does not fit here: it speaks to a few
fixed nodes of ours, not to any host a subscription names.

    2xx (201 Created)       sent
    404, 410                gone: the browser unsubscribed or the subscription expired: delete it
    429, 5xx, no answer     retry: later, not before Retry-After when the service says so
    any other 3xx/4xx       refused: 400 malformed, 401/403 VAPID rejected, 413 too large;
                            sending it again would not help: dead-letter it with the reason
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import urllib3

SENT = "sent"
GONE = "gone"
RETRY = "retry"
REFUSED = "refused"
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class Answer:
    outcome: str
    status: int | None
    reason: str
    retry_after: float | None = None  # seconds the service asked us to wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), at most an hour."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def classify(status: int, retry_after: str | None = None, text: str = "") -> Answer:
    detail = f"HTTP {status}" + (f": {text.strip()[:200]}" if text.strip() else "")
    if 200 <= status < 300:
        return Answer(SENT, status, detail)
    if status in (404, 410):
        return Answer(GONE, status, detail)
    if status == 429 or status >= 500:
        return Answer(RETRY, status, detail, parse_retry_after(retry_after))
    return Answer(REFUSED, status, detail)


class PushSender:
    def __init__(self, timeout: float = 10.0, connections_per_origin: int = 4, ca_file: str | None = None):
        self.timeout = timeout
        self.pool = urllib3.PoolManager(
            num_pools=128,
            maxsize=connections_per_origin,
            block=True,  # at most that many connections per origin; others wait for one
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file or None,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )

    def send(self, endpoint: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            response = self.pool.request(
                "POST",
                endpoint,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                pool_timeout=self.timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return Answer(RETRY, None, f"no answer: {type(exc).__name__}: {exc}")
        text = response.data[:400].decode("utf-8", "replace")
        return classify(response.status, response.headers.get("Retry-After"), text)

    def close(self) -> None:
        self.pool.clear()
