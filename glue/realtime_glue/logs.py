"""How the glue logs: to the journal with priorities and fields, or plain lines to stdout.

Under systemd (stdout is the journal: JOURNAL_STREAM names it), each record
goes to journald over its native socket, without a dependency (the protocol
is a datagram of FIELD=value lines), with its priority (`journalctl -p
warning` finds warnings) and fields an operator can filter on:
GLUE_PIPELINE, GLUE_JOB_ID, GLUE_NODE (`journalctl GLUE_NODE=push1:80`). If
the socket cannot be used, the line goes to stdout with a `<N>` priority
prefix, which journald reads too (SyslogLevelPrefix=yes, the default).
Elsewhere (a terminal, a test) it is a plain line with the fields appended.

The unit's SyslogIdentifier already says which pipeline it is; messages do
not repeat it. Pass fields with `extra=fields(job=..., node=...)`.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"
MAX_MESSAGE = 64 * 1024

# syslog priorities, as journald files them.
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def fields(job: str | None = None, node: str | None = None) -> dict:
    """`extra=` for a log call: the job and the push node it is about."""
    return {"glue_fields": {k: v for k, v in (("GLUE_JOB_ID", job), ("GLUE_NODE", node)) if v}}


def priority(record: logging.LogRecord) -> int:
    for level, value in sorted(PRIORITIES.items(), reverse=True):
        if record.levelno >= level:
            return value
    return 7


def _record_fields(record: logging.LogRecord) -> dict:
    return dict(getattr(record, "glue_fields", {}))


class PlainFormatter(logging.Formatter):
    """LEVEL logger: message  job=... node=..."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        extra = _record_fields(record)
        if extra:
            text += "  " + " ".join(f"{k.removeprefix('GLUE_').lower()}={v}" for k, v in extra.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JournalHandler(logging.Handler):
    """journald's native protocol over its datagram socket; `<N>` lines on stdout if that fails."""

    def __init__(self, identifier: str, pipeline: str = "", path: str = JOURNAL_SOCKET, fallback=None):
        super().__init__()
        self.identifier = identifier
        self.pipeline = pipeline
        self.path = path
        self.fallback = fallback or sys.stdout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.formatter = PlainFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + self.formatter.formatException(record.exc_info)
            entry = {
                "MESSAGE": message[:MAX_MESSAGE],
                "PRIORITY": str(priority(record)),
                "SYSLOG_IDENTIFIER": self.identifier,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
                **({"GLUE_PIPELINE": self.pipeline} if self.pipeline else {}),
                **_record_fields(record),
            }
            try:
                self.sock.sendto(encode(entry), self.path)
            except OSError:
                # No journal socket after all: journald still reads `<N>` off stdout.
                self.fallback.write(f"<{entry['PRIORITY']}>{self.formatter.format(record)}\n")
                self.fallback.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def encode(entry: dict[str, str]) -> bytes:
    """journald's native format: KEY=value lines; a value with a newline is length-prefixed."""
    out = bytearray()
    for key, value in entry.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def stdout_is_the_journal(environ=os.environ, stream=None) -> bool:
    """systemd sets JOURNAL_STREAM=<device>:<inode> of the stream stdout is connected to."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stdout).fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def setup_logging(pipeline: str, verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if stdout_is_the_journal():
        handler: logging.Handler = JournalHandler(f"glue@{pipeline}", pipeline)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
