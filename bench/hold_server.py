"""A publisher endpoint that holds every request until told to let go.

    python bench/hold_server.py PORT

Answers nothing until it receives SIGUSR1; from then on it answers every
held and new request `200 OK` at once (keep-alive). With it as the push node,
the glue's jobs pile up in flight: the RSS bench measures the glue then.
"""

from gevent import monkey

monkey.patch_all()

import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

released = gevent.event.Event()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"


def read_request(stream) -> bool:
    """Reads one request (headers and Content-Length body); False at EOF."""
    length = 0
    line = stream.readline()
    if not line:
        return False
    while line not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        line = stream.readline()
    if length:
        stream.read(length)
    return True


def handle(sock, _address) -> None:
    stream = sock.makefile("rb")
    try:
        while read_request(stream):
            released.wait()
            sock.sendall(OK)
    except OSError:
        pass
    finally:
        sock.close()


def main(port: int) -> None:
    gevent.signal_handler(signal.SIGUSR1, released.set)
    server = StreamServer(("127.0.0.1", port), handle, backlog=1024)
    server.start()
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
