"""Logs: journal priorities and fields over journald's native socket, `<N>` lines when that
socket fails, and plain lines elsewhere; no message repeats the unit's glue@X identifier."""

from __future__ import annotations

import io
import logging
import os
import struct

import pytest

from realtime_glue.logs import JournalHandler, PlainFormatter, fields, stdout_is_the_journal


def decode(datagram: bytes) -> dict[str, str]:
    """journald's native format back into fields."""
    entry, rest = {}, datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            entry[key.decode()], rest = value.decode(), after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            entry[line.decode()], rest = after[8 : 8 + size].decode(), after[8 + size + 1 :]
    return entry


@pytest.fixture
def logger():
    log = logging.getLogger("realtime_glue.test_logs")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()


def test_each_record_reaches_the_journal_with_its_priority_and_fields(journal, logger):
    path, sock = journal
    logger.addHandler(JournalHandler("glue@comments", "comments", path=path))
    logger.warning("push node %s is failing", "push1:80", extra=fields(node="push1:80"))
    entry = decode(sock.recv(65536))
    assert entry["MESSAGE"] == "push node push1:80 is failing"
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "glue@comments"
    assert entry["GLUE_PIPELINE"] == "comments" and entry["GLUE_NODE"] == "push1:80"
    assert "GLUE_JOB_ID" not in entry
    logger.error("job %s stalled", "j1", extra=fields(job="j1"))
    assert decode(sock.recv(65536))["PRIORITY"] == "3"
    logger.critical("claim loop died")
    assert decode(sock.recv(65536))["PRIORITY"] == "2"
    logger.info("ready")
    assert decode(sock.recv(65536))["PRIORITY"] == "6"


def test_a_traceback_travels_as_one_multi_line_field(journal, logger):
    path, sock = journal
    logger.addHandler(JournalHandler("glue@comments", "comments", path=path))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("heartbeat died", extra=fields(job="j9"))
    entry = decode(sock.recv(65536))
    assert entry["MESSAGE"].startswith("heartbeat died\nTraceback")
    assert entry["MESSAGE"].rstrip().endswith("RuntimeError: boom")
    assert entry["GLUE_JOB_ID"] == "j9"


def test_without_a_journal_socket_the_line_carries_a_priority_prefix(tmp_path, logger):
    out = io.StringIO()
    logger.addHandler(JournalHandler("glue@comments", "comments", path=str(tmp_path / "none"), fallback=out))
    logger.warning("cannot reach Redis", extra=fields(node="push1:80"))
    assert out.getvalue() == "<4>WARNING realtime_glue.test_logs: cannot reach Redis  node=push1:80\n"


def test_plain_lines_name_the_logger_not_the_unit(logger):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(PlainFormatter())
    logger.addHandler(handler)
    logger.warning("job %s failed", "j1", extra=fields(job="j1"))
    assert out.getvalue() == "WARNING realtime_glue.test_logs: job j1 failed  job_id=j1\n"
    assert "glue@" not in out.getvalue()


def test_stdout_is_the_journal_only_when_journal_stream_names_it(tmp_path):
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        assert stdout_is_the_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        assert not stdout_is_the_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, stream)
        assert not stdout_is_the_journal({}, stream)
