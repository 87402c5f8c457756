"""Unit-test helpers: no servers, only the glue's own code and small fakes."""

from __future__ import annotations

import os
import socket

import pytest

from realtime_glue.message import Message
from realtime_glue.stage import StageContext


@pytest.fixture
def context():
    return StageContext(pipeline="test")


@pytest.fixture
def key_file(tmp_path):
    """Write a private (0600) key file and return its path."""

    def write(content: bytes, name: str = "key", mode: int = 0o600) -> str:
        path = tmp_path / name
        path.write_bytes(content)
        os.chmod(path, mode)
        return str(path)

    return write


def message(channel="news", data=None, event="message", job_id="job-1", **fields) -> Message:
    """A Message as the json stage leaves it."""
    return Message(
        job_id=job_id, raw=b"", channel=channel, event=event, data={} if data is None else data, **fields
    )


def datagram_socket(path: str, timeout: float):
    """An AF_UNIX datagram socket bound at `path`: yields (path, socket), closes it after."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(timeout)
    yield path, sock
    sock.close()


@pytest.fixture
def systemd(tmp_path):
    """A stand-in for systemd's notify socket."""
    yield from datagram_socket(str(tmp_path / "notify"), 10)


@pytest.fixture
def journal(tmp_path):
    """A stand-in for journald's native socket."""
    yield from datagram_socket(str(tmp_path / "journal.socket"), 5)
