"""A push node that fails on command: a small HTTP/1.1 proxy in front of a real nginx.

Each request the glue pipelines to it is read in order and either forwarded to
the real node (over one keep-alive connection per client connection, so
pipelined order is kept) or answered by the proxy itself with the status the
test's rule picks, without the node ever seeing it. `down` closes every new
connection at once (a node that is not there).

    node = PushNode().start()
    faulty = FaultyNode(node.port, rule=lambda path, body: 500 if b'"n":3' in body else None)
    ... glue publishes to faulty.base_url, subscribers listen on node ...
    faulty.forwarded   # bodies the real node received, in order

Plain module, threads only (no gevent): tests import it and wrap it in fixtures.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable

from support.ports import free_port

# rule(path, body) -> None to forward, or the status the proxy answers with instead.
Rule = Callable[[str, bytes], int | None]


class FaultyNode:
    def __init__(self, upstream_port: int, rule: Rule | None = None, host: str = "127.0.0.1"):
        self.upstream_port = upstream_port
        self.rule: Rule = rule or (lambda path, body: None)
        self.host = host
        self.port = free_port(host)
        self.down = False
        self.forwarded: list[bytes] = []
        self.answered: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream = http.client.HTTPConnection(self.host, self.upstream_port, timeout=30)
        reader = conn.makefile("rb")
        try:
            while True:
                request_line = reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers = {}
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip()] = value.strip()
                body = reader.read(int(headers.get("Content-Length", "0")))
                status = self.rule(path, body)
                if status is None:
                    upstream.request(method, path, body=body, headers=headers)
                    response = upstream.getresponse()
                    answer_body = response.read()
                    status, reason = response.status, response.reason
                    with self._lock:
                        self.forwarded.append(body)
                else:
                    reason, answer_body = (
                        "Refused by the test",
                        f"refused with {status} by the test\n".encode(),
                    )
                    with self._lock:
                        self.answered.append((status, body))
                conn.sendall(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(answer_body)}\r\n\r\n".encode()
                    + answer_body
                )
        except OSError:
            return
        finally:
            upstream.close()
            conn.close()
