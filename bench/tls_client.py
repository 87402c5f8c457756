"""tls_client: many EventSource subscribers over TLS in one process, for
bench/tls_capacity.py (asyncio; the handshakes and the encryption are OpenSSL's).

    python bench/tls_client.py MODE HOST PORT NAME CAFILE COUNT STREAMS PATH

MODE `h1`: COUNT TLS connections (ALPN http/1.1), each `GET PATH` with
Accept: text/event-stream. MODE `h2`: COUNT subscriptions as HTTP/2 streams,
STREAMS per TLS connection (ALPN h2), the frames written by hand (a preface,
SETTINGS with a large initial window, HEADERS with HPACK literals; SETTINGS and
PING acknowledged; nothing else needed to hold a stream open; tests/support/http2.py).
MODE `plain`: as
h1 without TLS (NAME and CAFILE unused).

Prints `ready OK FAILED FIRST_ERROR` once every subscription has its 200 (or
failed), then answers stdin: `count` prints `count N TOTAL`, the subscriptions
that have received at least one `data: bench` message and the messages received
in all; `quit` (or end of input) closes everything. At most 64 handshakes run at once.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.http2 import (
    ACK,
    DATA,
    END_HEADERS,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    SETTINGS,
    STATUS_200,
    WINDOW_UPDATE,
    frame,
    request_headers,
    settings,
    window_update,
)

EVENT = b"data: bench"
HANDSHAKES_AT_ONCE = 64


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.first_error = "-"
        self.received: set[tuple[int, int]] = set()  # (connection, stream) with a message
        self.messages = 0

    def seen(self, connection: int, stream: int, tail: bytes, data: bytes) -> bytes:
        """Counts the events in `data` (`tail`: the end of the stream's previous
        data, for an event split between two reads); returns the new tail."""
        found = (tail + data).count(EVENT) - tail.count(EVENT)
        if found:
            self.received.add((connection, stream))
            self.messages += found
        return (tail + data)[-len(EVENT) :]

    def fail(self, error: str) -> None:
        self.failed += 1
        if self.first_error == "-":
            self.first_error = error.replace(" ", "_")[:60]


def tls_context(cafile: str, alpn: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols([alpn])
    return context


async def open_connection(mode, host, port, name, context, gate):
    async with gate:
        if mode == "plain":
            return await asyncio.open_connection(host, port)
        return await asyncio.open_connection(host, port, ssl=context, server_hostname=name)


async def http1(number, mode, host, port, name, context, path, gate, tally, stop):
    try:
        reader, writer = await open_connection(mode, host, port, name, context, gate)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            tally.fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            writer.close()
            return
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as error:
        tally.fail(f"{type(error).__name__}:{error}")
        return
    tally.ok += 1
    tail = b""
    try:
        while not stop.is_set():
            chunk = await reader.read(65536)
            if not chunk:
                break
            tail = tally.seen(number, 0, tail, chunk)
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


# --- HTTP/2 (tests/support/http2.py: frames written by hand) ------------------------

BIG_WINDOW = 2**30


async def http2(number, host, port, name, context, path, streams, gate, tally, stop):
    try:
        reader, writer = await open_connection("h2", host, port, name, context, gate)
    except (OSError, ssl.SSLError) as error:
        for _ in range(streams):
            tally.fail(f"{type(error).__name__}:{error}")
        return
    out = PREFACE + frame(SETTINGS, 0, 0, settings(BIG_WINDOW - 1))
    out += frame(WINDOW_UPDATE, 0, 0, window_update(BIG_WINDOW))
    ids = [1 + 2 * i for i in range(streams)]
    block = request_headers(name, path)
    out += b"".join(frame(HEADERS, END_HEADERS, stream, block) for stream in ids)
    writer.write(out)
    answered: set[int] = set()
    tails = dict.fromkeys(ids, b"")
    try:
        while not stop.is_set():
            head = await reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags, stream = head[3], head[4], struct.unpack("!I", head[5:])[0] & 0x7FFFFFFF
            payload = await reader.readexactly(length) if length else b""
            if kind == SETTINGS and not flags & ACK:
                writer.write(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                writer.write(frame(PING, ACK, 0, payload))
            elif kind == HEADERS and stream in ids and stream not in answered:
                answered.add(stream)
                if payload[:1] == STATUS_200:
                    tally.ok += 1
                else:
                    tally.fail(f"h2_status_{payload[:4].hex()}")
            elif kind == DATA and stream in tails:
                tails[stream] = tally.seen(number, stream, tails[stream], payload)
            elif kind == GOAWAY:
                break
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        for _ in set(ids) - answered:
            tally.fail("h2_no_response")
        writer.close()


async def main(mode, host, port, name, cafile, count, streams, path) -> None:
    tally = Tally()
    stop = asyncio.Event()
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    if mode == "h2":
        context = tls_context(cafile, "h2")
        connections = -(-count // streams)
        tasks = [
            asyncio.create_task(
                http2(
                    n, host, port, name, context, path, min(streams, count - n * streams), gate, tally, stop
                )
            )
            for n in range(connections)
        ]
    else:
        context = tls_context(cafile, "http/1.1") if mode == "h1" else None
        tasks = [
            asyncio.create_task(http1(n, mode, host, port, name, context, path, gate, tally, stop))
            for n in range(count)
        ]
    while tally.ok + tally.failed < count:
        await asyncio.sleep(0.05)
    print(f"ready {tally.ok} {tally.failed} {tally.first_error}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() == "count":
            print(f"count {len(tally.received)} {tally.messages}", flush=True)
        else:
            break
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    mode, host, port, name, cafile, count, streams, path = sys.argv[1:9]
    asyncio.run(main(mode, host, int(port), name, cafile, int(count), int(streams), path))
