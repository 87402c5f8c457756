"""One push node's publisher contract: what a publish is, and what its answer means.

POST <node>/pub?id=<channel> with the body as is and an `Event-ID` header
that is the same on every node. 200, 201 and 202 mean stored. Any other 4xx
but 408 (request timeout) and 429 (too many requests) means the node refuses
this message for good (PublishRefused, with the start of its answer); any
other answer, no answer in time or a lost connection means it failed this
time (PublishFailed).

An https:// node is checked like any TLS server: its chain against `ca_file`
(or the system's trust store) and its name against the URL's host. A node that
fails the check fails every publish this time (PublishFailed naming the TLS
error): its messages wait in its backlog until it presents a certificate that
passes.

Order: every message of a channel is sent under the channel as its key, so
the pipelined client (../http_client.py) carries it over the same keep-alive
connection, and each node stores a channel's messages in claim order, the
same order on every node. That is what lets a browser fail over to another
node with Last-Event-ID without missing a message.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote, urlsplit

import gevent

from ..channels import channel_problem, event_id_problem
from ..errors import PublishFailed, PublishRefused, Reject
from ..http_client import PipelinedHttpClient, Response

DELIVERED = (200, 201, 202)
# 4xx answers that say "not now" rather than "never".
TRY_AGAIN = (408, 429)
EXCERPT_CHARS = 200
# Channels whose request heads are kept (then the cache starts again).
MAX_REQUEST_HEADS = 10_000


def excerpt(body: bytes) -> str:
    """The start of an answer's body as one line of text (tags and spacing removed)."""
    text = re.sub(r"<[^>]*>", " ", body.decode("utf-8", "replace"))
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text[:EXCERPT_CHARS] or "(no body)"


class PushNode:
    @staticmethod
    def label_of(url: str) -> str:
        """How a node is named in logs, metrics and its backlog's feed: host:port."""
        return urlsplit(url).netloc

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        connections: int = 8,
        metrics=None,
        spawn=gevent.spawn,
        ca_file: str | None = None,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"push node URL must be http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        self.path_prefix = parts.path.rstrip("/")
        self.label = self.label_of(url)
        self.timeout = timeout
        self.metrics = metrics
        # Observed for every POST: the labelled child is looked up once.
        self._publish_seconds = (
            metrics.publish_seconds.labels(node=self.label) if metrics is not None else None
        )
        self._host_header = parts.netloc.encode()
        # Each channel's request line and headers up to Content-Length, by channel.
        self._request_heads: dict[str, bytes] = {}
        self.client = PipelinedHttpClient(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            tls=parts.scheme == "https",
            connect_timeout=timeout,
            connections=connections,
            spawn=spawn,
            ca_file=ca_file,
        )

    @staticmethod
    def unsendable(channel, event_id) -> str | None:
        """Why a message with this channel and event id cannot be published, or None."""
        problem = channel_problem(channel, wildcard_prefix="") or (
            event_id_problem(event_id) if event_id is not None else None
        )
        return f"the message cannot be sent: {problem}" if problem else None

    def _request(self, channel: str, event_id: str | None, body: bytes, method: str = "POST") -> bytes:
        # Checked here, where the values enter a request line and a header, whatever
        # stages ran before (or whatever a backlog record in Redis says).
        problem = self.unsendable(channel, event_id)
        if problem:
            raise Reject(f"{self.label}: {problem}")
        if method != "POST":  # rare (a channel deleted): not cached
            return b"%s %s/pub?id=%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s" % (
                method.encode(),
                self.path_prefix.encode(),
                quote(channel, safe=":@=").encode(),
                self._host_header,
                len(body),
                body,
            )
        head = self._request_heads.get(channel)
        if head is None:  # the same for every message of the channel: made once
            head = b"\r\n".join(
                [
                    f"POST {self.path_prefix}/pub?id={quote(channel, safe=':@=')} HTTP/1.1".encode(),
                    b"Host: " + self._host_header,
                    b"Content-Type: application/json",
                    b"Content-Length: ",
                ]
            )
            if len(self._request_heads) >= MAX_REQUEST_HEADS:
                self._request_heads.clear()
            self._request_heads[channel] = head
        if event_id:
            return b"%s%d\r\nEvent-ID: %s\r\n\r\n%s" % (head, len(body), event_id.encode(), body)
        return b"%s%d\r\n\r\n%s" % (head, len(body), body)

    def start_publish(self, channel: str, event_id: str | None, body: bytes) -> tuple:
        """Queue the POST without waiting; pass the result to finish_publish."""
        return channel, self.client.submit(channel, self._request(channel, event_id, body)), time.monotonic()

    def wait_for_answers(self, pendings: list[tuple], timeout: float) -> None:
        """Wait, up to `timeout` in all, until the last of `pendings` on each connection is
        answered (or failed): one wait for a batch. A connection answers in the order it was
        written, so the earlier ones are then answered too; finish_publish still checks each."""
        last = {}
        for channel, result, _started in pendings:
            last[id(self.client.lane_for(channel))] = result
        waiting = [result for result in last.values() if not result.ready()]
        if waiting:
            gevent.wait(waiting, timeout=timeout)

    def _answer(self, pending: tuple, timeout: float) -> Response:
        channel, result, _started = pending
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            self.client.abandon(channel, result)
            raise PublishFailed(f"{self.label}: no answer within {self.timeout:g}s") from None
        except Exception as exc:
            raise PublishFailed(f"{self.label}: {type(exc).__name__}: {exc}") from None

    def finish_publish(self, pending: tuple, timeout: float) -> None:
        """Wait for a queued POST; raises PublishFailed naming the node and the problem."""
        _channel, _result, started = pending
        response = self._answer(pending, timeout)
        if self._publish_seconds is not None:
            self._publish_seconds.observe(time.monotonic() - started)
        if response.status in DELIVERED:
            return
        if 400 <= response.status < 500 and response.status not in TRY_AGAIN:
            raise PublishRefused(self.label, response.status, excerpt(response.body))
        raise PublishFailed(f"{self.label}: HTTP {response.status}")

    def delete_channel(self, channel: str) -> bool:
        """DELETE the channel: the node drops its stored messages and ends its subscribers'
        streams (push-stream needs `push_stream_publisher admin`). True if the node had
        the channel, False if not; PublishRefused or PublishFailed otherwise. Sent on the
        channel's connection, so it comes after every message queued for the channel."""
        request = self._request(channel, None, b"", method="DELETE")
        response = self._answer(
            (channel, self.client.submit(channel, request), time.monotonic()), self.timeout
        )
        if response.status in DELIVERED:
            return True
        if response.status == 404:
            return False
        if 400 <= response.status < 500 and response.status not in TRY_AGAIN:
            raise PublishRefused(self.label, response.status, excerpt(response.body))
        raise PublishFailed(f"{self.label}: HTTP {response.status}")

    def publish(self, channel: str, event_id: str | None, body: bytes) -> None:
        """POST one message and wait for the answer."""
        self.finish_publish(self.start_publish(channel, event_id, body), self.timeout)

    def close(self) -> None:
        self.client.close()
