"""One push node's publisher endpoint: a pool of keep-alive connections and a POST.

POST <node>/pub?id=<channel> with the body as is and an `Event-ID` header
that is the same on every node. 200, 201 and 202 mean stored.

The HTTP/1.1 client is our own and small on purpose: a publish is one
prebuilt request written with one sendall and one response read from a
buffered socket. Profiling showed a general-purpose client spending twice
the CPU per POST, and the glue is bound by one core.
"""

from __future__ import annotations

import time
from collections import deque
from urllib.parse import quote, urlsplit

# gevent's own socket and ssl: cooperative whether or not the stdlib is patched.
from gevent import socket, ssl
from gevent.lock import BoundedSemaphore

DELIVERED = (200, 201, 202)
MAX_HEADER_BYTES = 64 * 1024


class PublishFailed(Exception):
    pass


class _Stale(Exception):
    """A reused keep-alive connection was closed by the node before it answered."""


class _Connection:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()

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
            raise _Stale()
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


class PushNode:
    @staticmethod
    def label_of(url: str) -> str:
        """How a node is named in logs, metrics and its backlog's feed: host:port."""
        return urlsplit(url).netloc

    def __init__(self, url: str, timeout: float = 5.0, pool_size: int = 64, metrics=None):
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
        self._slots = BoundedSemaphore(pool_size)
        self._idle: deque[_Connection] = deque()
        self._host_header = parts.netloc.encode()

    def _connect(self) -> _Connection:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        return _Connection(sock)

    def _request(self, channel: str, event_id: str | None, body: bytes) -> bytes:
        head = [
            f"POST {self.path_prefix}/pub?id={quote(channel, safe='')} HTTP/1.1".encode(),
            b"Host: " + self._host_header,
            b"Content-Type: application/json",
            b"Content-Length: " + str(len(body)).encode(),
        ]
        if event_id:
            head.append(b"Event-ID: " + event_id.encode())
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    def publish(self, channel: str, event_id: str | None, body: bytes) -> None:
        """POST one message; raises PublishFailed naming the node and the problem."""
        request = self._request(channel, event_id, body)
        started = time.monotonic()
        with self._slots:
            status = self._exchange(request)
        if self.metrics is not None:
            self.metrics.publish_seconds.labels(node=self.label).observe(time.monotonic() - started)
        if status not in DELIVERED:
            raise PublishFailed(f"{self.label}: HTTP {status}")

    def _exchange(self, request: bytes) -> int:
        # A keep-alive connection the node closed while idle fails before any
        # answer: try the next one (then a new one) instead of failing the publish.
        while True:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else None
            try:
                if conn is None:
                    conn = self._connect()
                conn.sock.sendall(request)
                status, keep_alive = conn.read_response()
            except (_Stale, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused:
                    continue
                raise PublishFailed(f"{self.label}: connection closed before an answer ({exc!r})") from None
            except (OSError, ValueError) as exc:
                if conn is not None:
                    conn.close()
                raise PublishFailed(f"{self.label}: {type(exc).__name__}: {exc}") from None
            if keep_alive:
                self._idle.append(conn)
            else:
                conn.close()
            return status

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
