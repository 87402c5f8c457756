"""Keep-alive TLS connections to one push service origin, at most `limit` in use at once.

A connection is taken for one request and its response, then given back if
the server keeps it open; an idle one older than MAX_IDLE is closed rather
than risk the server closing it under a new request. Certificates are
checked against the system's CAs (or `ca_file`), with the endpoint's host name.
"""

from __future__ import annotations

import time
from collections import deque
from urllib.parse import urlsplit

# gevent's own socket and ssl: cooperative whether or not the stdlib is patched.
from gevent import socket, ssl
from gevent.lock import BoundedSemaphore

MAX_IDLE = 30.0


def tls_context(ca_file: str | None = None):
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


class OriginConnections:
    def __init__(self, origin: str, limit: int, context, timeout: float):
        parts = urlsplit(origin)
        self.host = parts.hostname
        self.port = parts.port or 443
        self.context = context
        self.timeout = timeout
        self.slots = BoundedSemaphore(limit)
        self.idle: deque[tuple[object, float]] = deque()

    def take(self):
        """(connection, reused): the most recently used idle one, else a new one."""
        now = time.monotonic()
        while self.idle:
            sock, since = self.idle.pop()
            if now - since <= MAX_IDLE:
                return sock, True
            _close(sock)
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.context.wrap_socket(sock, server_hostname=self.host), False

    def give_back(self, sock) -> None:
        self.idle.append((sock, time.monotonic()))

    def close(self) -> None:
        while self.idle:
            _close(self.idle.pop()[0])


def _close(sock) -> None:
    try:
        sock.close()
    except OSError:
        pass
