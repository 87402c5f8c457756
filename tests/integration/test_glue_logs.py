"""The real glue's log lines: priorities journald reads, fields, no repeated unit name.
(journald itself, with its native socket and `journalctl -p`, is tested in the package test.)"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from realtime_glue.logs import JOURNAL_SOCKET
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-logs-"))


def test_under_systemd_without_the_native_socket_lines_carry_their_priority(workdir, redis_server, push_node):
    if os.path.exists(JOURNAL_SOCKET):
        pytest.skip(f"{JOURNAL_SOCKET} exists here: the glue would log into this host's journal")
    config = write_config(
        workdir, redis_server.url, [push_node.base_url], '[pipelines.comments]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "comments")
    st = os.stat(glue.log_path)  # its stdout, as JOURNAL_STREAM names a journal stream
    glue.env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    glue.start()
    try:
        (bad,) = JobFeed(redis_server.client(), "comments").put_many(["{not json"])
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["stalled"] == 1, 10)
    finally:
        glue.terminate()
    lines = glue.log().splitlines()
    assert any(line.startswith("<6>INFO realtime_glue.service: ready") for line in lines)
    (stalled,) = [line for line in lines if f"job {bad} stalled" in line]
    assert stalled.startswith("<4>WARNING realtime_glue.worker: ")
    assert stalled.endswith(f"job_id={bad}")
    assert "glue@" not in glue.log()


def test_outside_systemd_lines_are_plain(workdir, redis_server, push_node):
    config = write_config(
        workdir, redis_server.url, [push_node.base_url], '[pipelines.comments]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "comments").start()
    glue.terminate()
    assert "INFO realtime_glue.service: ready: pipeline comments" in glue.log()
    assert "<6>" not in glue.log() and "glue@" not in glue.log()
