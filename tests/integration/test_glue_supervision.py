"""The real glue process under supervision: a part that dies takes the process down with a
non-zero status (systemd restarts it); a part stuck in one step stops the watchdog pings."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config

PIPELINE = '[pipelines.comments]\npreset = "json-anon-http"\n'


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-supervision-"))


def comment(n: int, text: str = "hi") -> str:
    return json.dumps({"channel": "supervised", "event": "comment", "data": {"n": n, "text": text}})


@pytest.mark.parametrize(
    ("part", "loop"),
    [
        ("reclaimer", "realtime_glue.reclaimer.Reclaimer"),
        ("heartbeat", "realtime_glue.heartbeat.Heartbeat"),
        ("claim loop", "realtime_glue.worker.PipelineWorker"),
    ],
)
def test_a_part_that_dies_stops_the_process_with_status_70(workdir, redis_server, push_node, part, loop):
    module, cls = loop.rsplit(".", 1)
    method = "claim_loop" if part == "claim loop" else "run"
    fault = (
        f"import gevent, {module}\n"
        f"def dies(self):\n"
        f"    gevent.sleep(1)\n"
        f"    raise RuntimeError('injected fault')\n"
        f"{module}.{cls}.{method} = dies\n"
    )
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], PIPELINE)
    glue = GlueProcess(config, "comments", fault=fault).start()
    feed = JobFeed(redis_server.client(), "comments")
    feed.put_many([comment(n) for n in range(20)])
    try:
        code = glue.wait(timeout=60)
    finally:
        glue.kill()  # when it did not exit on its own
    assert code == 70, glue.log_tail()
    assert "CRITICAL" in glue.log() and f"{part} died: RuntimeError: injected fault" in glue.log()
    # Nothing it held is lost: what it had not finished is back on the queue (or finished).
    counts = feed_counts(redis_server.client(), "comments")
    assert counts["claimed"] == 0 and counts["ready"] + counts["finishes"] == 20


def test_a_batch_stuck_in_a_stage_stops_the_watchdog_pings(workdir, redis_server, push_node):
    # A stage that never returns for one message (the next stage to be written could do that).
    fault = (
        "import gevent.event, realtime_glue.stages.format as f\n"
        "process = f.Format.process\n"
        "def hangs(self, message):\n"
        "    if message.data.get('text') == 'hang':\n"
        "        gevent.event.Event().wait()\n"
        "    return process(self, message)\n"
        "f.Format.process = hangs\n"
    )
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], PIPELINE)
    config.write_text(
        config.read_text().replace("shutdown_grace = 5\n", "shutdown_grace = 5\nprogress_timeout = 3\n")
    )
    glue = GlueProcess(config, "comments", env={"WATCHDOG_USEC": "1000000"}, fault=fault).start()
    feed = JobFeed(redis_server.client(), "comments")
    try:
        assert "WATCHDOG=1" in glue.datagrams(1.5)  # pinging while all is well
        feed.put_many([comment(1)])
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["finishes"] == 1, 20)
        feed.put_many([comment(2, "hang")])
        withheld = []
        for _ in range(20):
            withheld = glue.datagrams(1.5)
            if any(d.startswith("STATUS=stuck:") for d in withheld):
                break
        status = next(d for d in withheld if d.startswith("STATUS=stuck:"))
        assert "a batch of 1 jobs" in status and "stuck for" in status
        assert "WATCHDOG=1" not in glue.datagrams(3)  # systemd would restart it now
        assert "no watchdog ping: a batch of 1 jobs" in glue.log()
    finally:
        glue.terminate()
