"""Just enough HTTP/2 to hold EventSource streams open, written by hand: the
client preface, frames, and request headers as HPACK literals (no Huffman, no
dynamic table). Used by tests that must control what an HTTP/2 client does
(read or not read, its windows) and by bench/tls_client.py.

    sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings(initial_window=2**30 - 1))
                 + frame(HEADERS, END_HEADERS, 1, request_headers("push.example", "/ev/news")))
    kind, flags, stream, payload = read_frame(sock)
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x6, 0x7, 0x8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
STATUS_200 = b"\x88"  # :status 200, indexed from HPACK's static table


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([kind, flags]) + struct.pack("!I", stream) + payload


def settings(initial_window: int) -> bytes:
    """A SETTINGS payload: SETTINGS_INITIAL_WINDOW_SIZE for every stream."""
    return struct.pack("!HI", 0x4, initial_window)


def window_update(increment: int) -> bytes:
    return struct.pack("!I", increment)


def _literal(index: int, value: str) -> bytes:
    """A literal header field without indexing, its name from the static table."""
    encoded = value.encode()
    if len(encoded) >= 127:
        raise ValueError("header value too long for this encoder")
    prefix = bytes([index]) if index < 15 else bytes([0x0F, index - 15])
    return prefix + bytes([len(encoded)]) + encoded


def request_headers(authority: str, path: str) -> bytes:
    """GET https://authority/path, Accept: text/event-stream."""
    # :method GET (static 2), :scheme https (7), :path (4), :authority (1), accept (19)
    return b"\x82\x87" + _literal(4, path) + _literal(1, authority) + _literal(19, "text/event-stream")


def parse_frames(buffer: bytes) -> tuple[list[tuple[int, int, int, bytes]], bytes]:
    """The complete frames at the start of `buffer` and what is left of it."""
    frames = []
    while len(buffer) >= 9:
        length = int.from_bytes(buffer[:3], "big")
        if len(buffer) < 9 + length:
            break
        stream = struct.unpack("!I", buffer[5:9])[0] & 0x7FFFFFFF
        frames.append((buffer[3], buffer[4], stream, buffer[9 : 9 + length]))
        buffer = buffer[9 + length :]
    return frames, buffer
