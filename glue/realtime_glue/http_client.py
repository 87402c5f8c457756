"""A small pipelined HTTP/1.1 client: a few keep-alive connections to one server.

Requests submitted under the same key always go over the same connection
(its lane, chosen by a hash of the key), written in the order they were
submitted, and HTTP/1.1 pipelining makes the server take the requests of one
connection in the order they were written. Responses are matched to
requests in order by one reader greenlet per connection.

It is our own and small on purpose: a request is one prebuilt byte string
written with one sendall. Profiling showed a general-purpose client spending
twice the CPU per POST, and the glue is bound by one core. What the requests
mean (the push node's publisher contract) is publishers/push_node.py.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from dataclasses import dataclass

import gevent
import gevent.event

# gevent's own socket and ssl: cooperative whether or not the stdlib is patched.
from gevent import socket, ssl
from gevent.event import AsyncResult

from .errors import ConnectionClosed
from .supervisor import idle

MAX_HEADER_BYTES = 64 * 1024
# How much of a response body is kept (enough to say why a server refused).
MAX_BODY_KEPT = 4096


@dataclass(frozen=True)
class Response:
    status: int
    # The start of the body (MAX_BODY_KEPT bytes at most).
    body: bytes


def ca_file_problem(path: str) -> str | None:
    """Why `path` cannot be the CA file TLS connections trust, or None."""
    try:
        ssl.create_default_context(cafile=path)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            return f"{path} holds no PEM CA certificate ({exc.reason or exc})"
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


class _Connection:
    def __init__(self, sock):
        self.sock = sock
        # What was received and not yet parsed starts at `pos` (consumed bytes are dropped
        # from the front only once they are most of the buffer: a response is usually small).
        self.buffer = bytearray()
        self.pos = 0
        # Requests written and not yet answered, oldest first.
        self.pending: deque[AsyncResult] = deque()
        self.last_used = time.monotonic()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        if self.pos and self.pos >= len(self.buffer) // 2:
            del self.buffer[: self.pos]
            self.pos = 0
        self.buffer += chunk
        return True

    def read_until(self, marker: bytes, limit: int = MAX_HEADER_BYTES) -> bytes:
        while True:
            index = self.buffer.find(marker, self.pos)
            if index >= 0:
                data = bytes(self.buffer[self.pos : index])
                self.pos = index + len(marker)
                return data
            if len(self.buffer) - self.pos > limit:
                raise ValueError("response header too long")
            if not self._fill():
                raise ConnectionError("connection closed by the server")

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) - self.pos < size:
            if not self._fill():
                raise ConnectionError("connection closed by the server mid-body")
        data = bytes(self.buffer[self.pos : self.pos + size])
        self.pos += size
        return data

    def read_response(self) -> tuple[Response, bool]:
        """The next response and whether the connection stays open after it."""
        if self.pos >= len(self.buffer) and not self._fill():
            raise ConnectionClosed()
        head = self.read_until(b"\r\n\r\n")
        status_line, _, _ = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        # Only three headers matter here; each is looked up in the lower-cased head.
        lowered = head.lower()
        keep_alive = _header(lowered, b"connection") != b"close" and parts[0] == b"HTTP/1.1"
        length = _header(lowered, b"content-length")
        body = b""
        if b"chunked" in (_header(lowered, b"transfer-encoding") or b""):
            chunks = []
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self.read_until(b"\r\n"):  # trailers, up to the empty line
                        pass
                    break
                chunks.append(self.read_exactly(size + 2)[:-2])
            body = b"".join(chunks)
        elif length is not None:
            body = self.read_exactly(int(length))
        elif status not in (204, 304) and not 100 <= status < 200:
            keep_alive = False  # body runs to the end of the connection; don't reuse it
        return Response(status, body[:MAX_BODY_KEPT]), keep_alive

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _send_all(sock, data: bytes) -> None:
    """sock.sendall(data), without the getsockopt(SO_SNDBUF) system call gevent's sendall
    makes every time (one in each batch's few, at everyday rates)."""
    sent = sock.send(data)
    if sent < len(data):
        view = memoryview(data)
        while sent < len(view):
            sent += sock.send(view[sent:])


def _header(lowered_head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower case) in a lower-cased response head, or None."""
    start = lowered_head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = lowered_head.find(b"\r\n", start)
    return lowered_head[start : end if end >= 0 else len(lowered_head)].strip()


class _Lane:
    """One keep-alive connection carrying pipelined requests.

    `submit` only appends to the outbox, without yielding, so requests leave
    in exactly the order callers reached the lane (a lock would let a
    newcomer overtake the greenlets already waiting for it). A writer
    greenlet sends whatever has piled up in one sendall; a reader greenlet
    per connection matches responses to requests in order.
    """

    # Reopen a connection idle for longer than this rather than race the
    # server's keepalive_timeout closing it under a new request.
    MAX_IDLE = 60.0

    def __init__(self, client: PipelinedHttpClient):
        self.client = client
        self.conn: _Connection | None = None
        self.outbox: deque[tuple[bytes, AsyncResult]] = deque()
        self.wakeup = gevent.event.Event()
        self.writer: gevent.Greenlet | None = None

    def submit(self, request: bytes) -> AsyncResult:
        """Queue the request; the result is set to its Response when it arrives."""
        result = AsyncResult()
        self.outbox.append((request, result))
        if self.writer is None:
            self.writer = self.client.spawn(self._write_outbox)
        self.wakeup.set()
        return result

    def _write_outbox(self) -> None:
        while True:
            with idle():  # nothing to send is a wait by choice
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
                        conn = self.conn = self.client.connect()
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
                    _send_all(conn.sock, b"".join(requests))
                except OSError as exc:
                    self._break(conn, exc)

    def _read_responses(self, conn: _Connection) -> None:
        try:
            while True:
                response, keep_alive = conn.read_response()
                conn.pending.popleft().set(response)
                if not keep_alive:
                    raise ConnectionClosed()
        except ConnectionClosed:
            self._break(conn, ConnectionError("connection closed by the server") if conn.pending else None)
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


class PipelinedHttpClient:
    """Keep-alive connections to one server; one key's requests share one connection, in order."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: bool = False,
        connect_timeout: float = 5.0,
        connections: int = 8,
        spawn=gevent.spawn,
        ca_file: str | None = None,
    ):
        self.host = host
        self.port = port
        # TLS checks the server's chain and its name (`host`): against the system's
        # trust store, or against `ca_file` alone when given.
        self.tls = ssl.create_default_context(cafile=ca_file) if tls else None
        self.connect_timeout = connect_timeout
        # Long-lived greenlets (each lane's writer) are started with this: spawn(run).
        self.spawn = spawn
        self._lanes = [_Lane(self) for _ in range(max(1, connections))]

    def connect(self) -> _Connection:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        # Responses are awaited with a deadline per request, not per read: an
        # idle lane blocks in recv until the server speaks or closes.
        sock.settimeout(None)
        return _Connection(sock)

    def lane_for(self, key: str) -> _Lane:
        return self._lanes[zlib.crc32(key.encode()) % len(self._lanes)]

    def submit(self, key: str, request: bytes) -> AsyncResult:
        """Queue a raw request on `key`'s connection; the result becomes its Response."""
        return self.lane_for(key).submit(request)

    def abandon(self, key: str, result: AsyncResult) -> None:
        """Give up on a request (it timed out): its connection is closed and reopened."""
        self.lane_for(key).abandon(result)

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
