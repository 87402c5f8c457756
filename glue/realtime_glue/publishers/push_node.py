"""One push node's publisher endpoint: a keep-alive connection pool and a POST.

POST <node>/pub?id=<channel> with the body as is and an `Event-ID` header
that is the same on every node. 200, 201 and 202 mean stored.
"""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit

from geventhttpclient import HTTPClient

DELIVERED = (200, 201, 202)


class PublishFailed(Exception):
    pass


class PushNode:
    @staticmethod
    def label_of(url: str) -> str:
        """How a node is named in logs, metrics and its backlog's feed: host:port."""
        return urlsplit(url).netloc

    def __init__(self, url: str, timeout: float = 5.0, pool_size: int = 32, metrics=None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"push node URL must be http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        self.path_prefix = parts.path.rstrip("/")
        self.label = self.label_of(url)
        self.metrics = metrics
        self.client = HTTPClient(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            concurrency=pool_size,
            connection_timeout=timeout,
            network_timeout=timeout,
        )

    def publish(self, channel: str, event_id: str | None, body: bytes) -> None:
        """POST one message; raises PublishFailed naming the node and the problem."""
        headers = {"Content-Type": "application/json"}
        if event_id:
            headers["Event-ID"] = event_id
        started = time.monotonic()
        try:
            response = self.client.request(
                "POST", f"{self.path_prefix}/pub?id={quote(channel, safe='')}", body, headers
            )
            try:
                response.read()
            finally:
                response.release()
        except Exception as exc:  # socket errors, timeouts, bad responses
            raise PublishFailed(f"{self.label}: {type(exc).__name__}: {exc}") from None
        if self.metrics is not None:
            self.metrics.publish_seconds.labels(node=self.label).observe(time.monotonic() - started)
        if response.status_code not in DELIVERED:
            raise PublishFailed(f"{self.label}: HTTP {response.status_code}")

    def close(self) -> None:
        self.client.close()
