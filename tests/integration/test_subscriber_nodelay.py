"""A push-stream subscriber's connection has Nagle's algorithm off on plain HTTP too.

Every message is a small write to each subscriber. With Nagle's algorithm on,
a message written before the subscriber acknowledged the previous one waits
for that ACK, which the subscriber's TCP stack may delay (40 ms on Linux, up
to 200 ms elsewhere): messages published a few at a time (the glue publishes
in batches) reached subscribers tens of milliseconds late, in groups (the glue
bench saw about 70 messages at a time arrive up to 45 ms late, in about half
its runs). nginx sets TCP_NODELAY on TLS and HTTP/2 connections and once a
connection goes keep-alive, never on a plain HTTP/1.x response that does not
end; our module package's debian/patches/subscribers-without-nagle-delays.patch
sets it when a subscriber starts. Without the patch every test here fails.

What is checked is the socket option on the node's end of the subscriber's
own connection, read from the nginx worker that holds it (pidfd_getfd): the
delay it prevents depends on the peer's ACK timing and is measured by the
bench, not timed here.

Debian 13 hosts run Debian's own package, which lacks the patch: skipped there.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import uuid

import pytest

from support.push_node import PushNode, our_patch_missing

pytestmark = pytest.mark.timeout(60)
SYS_PIDFD_GETFD = 438  # x86_64, Linux >= 5.6


@pytest.fixture(scope="module")
def node():
    if why := our_patch_missing("plain-HTTP subscribers keep Nagle's algorithm on"):
        pytest.skip(why)
    with PushNode("push_stream") as started:
        yield started


@pytest.fixture
def channel():
    return f"nodelay-{uuid.uuid4().hex[:12]}"


def node_end_nodelay(node: PushNode, client: socket.socket) -> int:
    """TCP_NODELAY on the node's end of `client`'s connection (found among the workers' fds)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ours = client.getsockname()
    for pid in node.worker_pids():
        pidfd = os.pidfd_open(pid)
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                        continue
                except OSError:
                    continue  # closed meanwhile
                copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
                if copy < 0:
                    error = ctypes.get_errno()
                    if error == errno.EBADF:
                        continue  # another connection, closed since the listing
                    pytest.skip(
                        f"pidfd_getfd on nginx's sockets: {os.strerror(error)} (needs root, Linux >= 5.6)"
                    )
                with socket.socket(fileno=copy) as theirs:
                    try:
                        if theirs.type == socket.SOCK_STREAM and theirs.getpeername() == ours:
                            return theirs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    except OSError:
                        continue  # a listening or unconnected socket
        finally:
            os.close(pidfd)
    raise AssertionError(f"no nginx worker holds the connection from {ours}")


def raw_get(node: PushNode, path: str, wait_for_headers: bool) -> socket.socket:
    sock = socket.create_connection((node.host, node.port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {node.host}\r\n\r\n".encode())
    if wait_for_headers:
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{path} closed: {received!r}")
            received += data
        assert received.startswith(b"HTTP/1.1 200"), received
    return sock


@pytest.mark.parametrize(("mode", "headers_first"), [("ev", True), ("sub", True), ("lp", False)])
def test_a_plain_http_subscriber_gets_each_message_without_a_nagle_delay(node, channel, mode, headers_first):
    with raw_get(node, f"/{mode}/{channel}", headers_first) as sock:
        node.wait_for_subscribers(channel)
        assert node_end_nodelay(node, sock) == 1, f"/{mode}/ keeps Nagle's algorithm on"


def test_a_websocket_subscriber_gets_each_message_without_a_nagle_delay(node, channel):
    with node.websocket(channel) as ws:
        node.wait_for_subscribers(channel)
        assert node_end_nodelay(node, ws.sock) == 1, "/ws/ keeps Nagle's algorithm on"
