"""One push node's publisher endpoint: pipelined POSTs over a few keep-alive lanes.

POST <node>/pub?id=<channel> with the body as is and an `Event-ID` header
that is the same on every node. 200, 201 and 202 mean stored.

Order: every message of a channel goes over the same connection (its lane,
chosen by a hash of the channel), and HTTP/1.1 pipelining makes nginx take
the requests of one connection in the order they were written. So each node
stores a channel's messages in claim order, the same order on every node,
which is what lets a browser fail over to another node with Last-Event-ID
without missing a message.

The HTTP/1.1 client is our own and small on purpose: a publish is one
prebuilt request written with one sendall, and a reader greenlet per lane
matches responses to requests in order. Profiling showed a general-purpose
client spending twice the CPU per POST, and the glue is bound by one core.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from urllib.parse import quote, urlsplit

import gevent
import gevent.event

# gevent's own socket and ssl: cooperative whether or not the stdlib is patched.
from gevent import socket, ssl
from gevent.event import AsyncResult

DELIVERED = (200, 201, 202)
MAX_HEADER_BYTES = 64 * 1024


class PublishFailed(Exception):
    pass


class _Closed(Exception):
    """The node closed the connection before answering every request on it."""


class _Connection:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        # Requests written and not yet answered, oldest first.
        self.pending: deque[AsyncResult] = deque()
        self.last_used = time.monotonic()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_until(self, marker: bytes, limit: int = MAX_HEADER_BYTES) -> bytes:
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                data = bytes(self.buffer[:index])
                del self.buffer[: index + len(marker)]
                return data
            if len(self.buffer) > limit:
                raise ValueError("response header too long")
            if not self._fill():
                raise ConnectionError("connection closed by the node")

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("connection closed by the node mid-body")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_response(self) -> tuple[int, bool]:
        """(status, keep_alive) of the next response; its body is read and dropped."""
        if not self.buffer and not self._fill():
            raise _Closed()
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self.read_until(b"\r\n"):  # trailers, up to the empty line
                        pass
                    break
                self.read_exactly(size + 2)
        elif "content-length" in headers:
            self.read_exactly(int(headers["content-length"]))
        elif status not in (204, 304) and not 100 <= status < 200:
            keep_alive = False  # body runs to the end of the connection; don't reuse it
        return status, keep_alive

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _Lane:
    """One keep-alive connection to a node carrying pipelined requests.

    `submit` only appends to the outbox, without yielding, so requests leave
    in exactly the order publishers reached the lane (a lock would let a
    newcomer overtake the greenlets already waiting for it). A writer
    greenlet sends whatever has piled up in one sendall; a reader greenlet
    per connection matches responses to requests in order.
    """

    # Reopen a connection idle for longer than this rather than race the
    # node's keepalive_timeout closing it under a new request.
    MAX_IDLE = 60.0

    def __init__(self, node: PushNode):
        self.node = node
        self.conn: _Connection | None = None
        self.outbox: deque[tuple[bytes, AsyncResult]] = deque()
        self.wakeup = gevent.event.Event()
        self.writer: gevent.Greenlet | None = None

    def submit(self, request: bytes) -> AsyncResult:
        """Queue the request; the result is set to the status when its response arrives."""
        result = AsyncResult()
        self.outbox.append((request, result))
        if self.writer is None:
            self.writer = gevent.spawn(self._write_outbox)
        self.wakeup.set()
        return result

    def _write_outbox(self) -> None:
        while True:
            self.wakeup.wait()
            self.wakeup.clear()
            while self.outbox:
                conn = self.conn
                if (
                    conn is not None
                    and not conn.pending
                    and time.monotonic() - conn.last_used > self.MAX_IDLE
                ):
                    self._break(conn, None)
                    conn = None
                if conn is None:
                    try:
                        conn = self.conn = self.node._connect()
                    except OSError as exc:
                        while self.outbox:
                            self.outbox.popleft()[1].set_exception(exc)
                        break
                    gevent.spawn(self._read_responses, conn)
                requests = []
                while self.outbox:
                    request, result = self.outbox.popleft()
                    requests.append(request)
                    conn.pending.append(result)
                conn.last_used = time.monotonic()
                try:
                    conn.sock.sendall(b"".join(requests))
                except OSError as exc:
                    self._break(conn, exc)

    def _read_responses(self, conn: _Connection) -> None:
        try:
            while True:
                status, keep_alive = conn.read_response()
                conn.pending.popleft().set(status)
                if not keep_alive:
                    raise _Closed()
        except _Closed:
            self._break(conn, ConnectionError("connection closed by the node") if conn.pending else None)
        except Exception as exc:
            self._break(conn, exc)

    def _break(self, conn: _Connection, exc: BaseException | None) -> None:
        """Close the connection; every request still waiting on it fails with `exc`."""
        if self.conn is conn:
            self.conn = None
        conn.close()
        while conn.pending:
            conn.pending.popleft().set_exception(exc or ConnectionError("connection closed"))

    def abandon(self, result: AsyncResult) -> None:
        """A request timed out: the responses after it can no longer be matched."""
        conn = self.conn
        if conn is not None and result in conn.pending:
            self._break(conn, TimeoutError("an earlier request on this connection timed out"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.kill(block=False)
            self.writer = None
        if self.conn is not None:
            self._break(self.conn, None)


class PushNode:
    @staticmethod
    def label_of(url: str) -> str:
        """How a node is named in logs, metrics and its backlog's feed: host:port."""
        return urlsplit(url).netloc

    def __init__(self, url: str, timeout: float = 5.0, connections: int = 8, metrics=None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"push node URL must be http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.path_prefix = parts.path.rstrip("/")
        self.label = self.label_of(url)
        self.timeout = timeout
        self.metrics = metrics
        self._lanes = [_Lane(self) for _ in range(max(1, connections))]
        self._host_header = parts.netloc.encode()

    def _connect(self) -> _Connection:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        # Responses are awaited with a deadline per request, not per read: an
        # idle lane blocks in recv until the node speaks or closes.
        sock.settimeout(None)
        return _Connection(sock)

    def _request(self, channel: str, event_id: str | None, body: bytes) -> bytes:
        head = [
            f"POST {self.path_prefix}/pub?id={quote(channel, safe=':@=')} HTTP/1.1".encode(),
            b"Host: " + self._host_header,
            b"Content-Type: application/json",
            b"Content-Length: " + str(len(body)).encode(),
        ]
        if event_id:
            head.append(b"Event-ID: " + event_id.encode())
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    def lane_for(self, channel: str) -> _Lane:
        return self._lanes[zlib.crc32(channel.encode()) % len(self._lanes)]

    def start_publish(self, channel: str, event_id: str | None, body: bytes) -> tuple:
        """Queue the POST without waiting; pass the result to finish_publish."""
        lane = self.lane_for(channel)
        return lane, lane.submit(self._request(channel, event_id, body)), time.monotonic()

    def finish_publish(self, pending: tuple, timeout: float) -> None:
        """Wait for a queued POST; raises PublishFailed naming the node and the problem."""
        lane, result, started = pending
        try:
            status = result.get(timeout=timeout)
        except gevent.Timeout:
            lane.abandon(result)
            raise PublishFailed(f"{self.label}: no answer within {self.timeout:g}s") from None
        except Exception as exc:
            raise PublishFailed(f"{self.label}: {type(exc).__name__}: {exc}") from None
        if self.metrics is not None:
            self.metrics.publish_seconds.labels(node=self.label).observe(time.monotonic() - started)
        if status not in DELIVERED:
            raise PublishFailed(f"{self.label}: HTTP {status}")

    def publish(self, channel: str, event_id: str | None, body: bytes) -> None:
        """POST one message and wait for the answer."""
        self.finish_publish(self.start_publish(channel, event_id, body), self.timeout)

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
