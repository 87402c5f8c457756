"""POSTs to push services, and what each answer means (RFC 8030 section 5, RFC 8292).

Push services are many https hosts, one per browser vendor. A request is
written with one sendall on a keep-alive TLS connection of its origin
(connections.py) and the answer parsed by the stdlib's http.client; a reused
connection the server had closed meanwhile is retried once on a new one.
Measured against urllib3 (the bench, gevent, TLS on loopback), urllib3 cost
2.4 to 3.2 times the CPU per request (390-740 us against 120-180 us; its
per-request connection checks and pool locks under gevent), and the glue is
bound by one core.

    2xx (201 Created)       sent
    404, 410                gone: the browser unsubscribed or the subscription expired: delete it
    429, 5xx, no answer     retry: later, not before Retry-After when the service says so
    any other 3xx/4xx       refused: 400 malformed, 401/403 VAPID rejected, 413 too large;
                            sending it again would not help: dead-letter it with the reason
"""

from __future__ import annotations

import email.utils
import http.client
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .connections import OriginConnections, tls_context
from .subscriptions import endpoint_origin

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


MAX_ANSWER_BYTES = 64 * 1024


class PushSender:
    def __init__(self, timeout: float = 10.0, connections_per_origin: int = 16, ca_file: str | None = None):
        self.timeout = timeout
        self.connections_per_origin = connections_per_origin
        self.context = tls_context(ca_file)
        self.origins: dict[str, OriginConnections] = {}

    def send(self, endpoint: str, body: bytes, headers: dict[str, str]) -> Answer:
        origin = endpoint_origin(endpoint)
        connections = self.origins.get(origin)
        if connections is None:
            connections = self.origins[origin] = OriginConnections(
                origin, self.connections_per_origin, self.context, self.timeout
            )
        if not connections.slots.acquire(timeout=self.timeout):
            return Answer(RETRY, None, f"no connection to {origin} free within {self.timeout:g}s")
        try:
            return self._exchange(connections, self._request(endpoint, body, headers))
        finally:
            connections.slots.release()

    @staticmethod
    def _request(endpoint: str, body: bytes, headers: dict[str, str]) -> bytes:
        parts = urlsplit(endpoint)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _exchange(self, connections: OriginConnections, request: bytes) -> Answer:
        answer = self._once(connections, request, retry_stale=True)
        # None: the server had closed the idle connection we reused; once more on a new one.
        return answer or self._once(connections, request, retry_stale=False)

    def _once(self, connections: OriginConnections, request: bytes, retry_stale: bool) -> Answer | None:
        sock, reused = None, False
        try:
            sock, reused = connections.take()
            sock.settimeout(self.timeout)
            sock.sendall(request)
            response = http.client.HTTPResponse(sock, method="POST")
            response.begin()
            text = response.read(MAX_ANSWER_BYTES)
            complete = response.isclosed()  # all of it read: the connection can carry another
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            _discard(sock)
            if retry_stale and reused:
                return None
            return Answer(RETRY, None, f"no answer: {type(exc).__name__}: {exc}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            _discard(sock)
            return Answer(RETRY, None, f"no answer: {type(exc).__name__}: {exc}")
        if complete and not response.will_close:
            connections.give_back(sock)
        else:
            response.close()
            _discard(sock)
        return classify(response.status, response.getheader("Retry-After"), text.decode("utf-8", "replace"))

    def close(self) -> None:
        for connections in self.origins.values():
            connections.close()


def _discard(sock) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
