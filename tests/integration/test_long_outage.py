"""One real outage of several minutes: Redis and a push node down together while the glue
runs. Afterwards every message has arrived once, in order per channel, on every node.

The outage lasts LONG_OUTAGE_SECONDS (180 by default). Select it with `-m long_outage`
(`make integration-long-outage`); `make integration` runs it after the rest, and `make test`
beside molecule, since it mostly waits. Longer outages (hours, thousands of retries) are
tested by driving the retry counters and the clock (tests/unit/test_long_outages.py,
tests/integration/test_reclaimer.py)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from support.event_collector import ChannelNumbers
from support.faulty_node import FaultyNode
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config
from support.push_node import PushNode

OUTAGE = float(os.environ.get("LONG_OUTAGE_SECONDS", "180"))
CHANNELS = [f"outage-{c}" for c in range(4)]


def put_round(feed: JobFeed, start: int, per_channel: int) -> None:
    """`per_channel` messages on every channel, interleaved, in batches of 20."""
    payloads = [
        json.dumps({"channel": channel, "event": "comment", "data": {"n": n}})
        for n in range(start, start + per_channel)
        for channel in CHANNELS
    ]
    for i in range(0, len(payloads), 20):
        feed.put_many(payloads[i : i + 20])


@pytest.mark.long_outage
@pytest.mark.timeout(OUTAGE + 600)
def test_redis_and_a_push_node_down_together_for_minutes_lose_reorder_and_repeat_nothing(redis_aof):
    workdir = Path(tempfile.mkdtemp(prefix="glue-long-outage-"))
    stay_up, go_down = PushNode().start(), PushNode().start()
    # The glue reaches go_down through a gate, so that after the outage its subscriber is
    # connected again before the glue's backlog reaches it.
    gate = FaultyNode(go_down.cluster_port)
    config = write_config(
        workdir,
        redis_aof.url,
        [stay_up.cluster_url, gate.base_url],
        '[pipelines.comments]\npreset = "json-anon-http"\n',
    )
    config.write_text(config.read_text().replace("timeout = 2.0\n", "timeout = 2.0\nmessage_ttl = 3600\n"))
    glue = GlueProcess(config, "comments").start()
    on_stay_up, before_down = ChannelNumbers(stay_up, CHANNELS), ChannelNumbers(go_down, CHANNELS)
    after_down = None
    gate_label = f"127.0.0.1:{gate.port}"

    def backlog() -> int:
        return json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]["backlog"][gate_label]

    try:
        put_round(JobFeed(redis_aof.client(), "comments"), 0, 25)
        wait_until(lambda: on_stay_up.count() == 100 and before_down.count() == 100, 60, what="round 1")
        # The push node goes down: its messages wait in its backlog.
        gate.down = True
        go_down.stop()
        put_round(JobFeed(redis_aof.client(), "comments"), 25, 25)
        wait_until(lambda: on_stay_up.count() == 200 and backlog() == 100, 60, what="round 2 held")
        # Then Redis goes too, with a round just put and in flight.
        put_round(JobFeed(redis_aof.client(), "comments"), 50, 25)
        redis_aof.kill()
        started = time.monotonic()
        while time.monotonic() - started < OUTAGE:
            assert glue.alive(), glue.log_tail()
            time.sleep(5)
        print(f"Redis and a push node down together for {time.monotonic() - started:.0f}s")
        redis_aof.start()
        put_round(JobFeed(redis_aof.client(), "comments"), 75, 25)
        wait_until(lambda: on_stay_up.count() == 400, 120, interval=0.5, what="every round on the node up")
        wait_until(lambda: backlog() == 300, 60, interval=0.5, what="three rounds held for the node down")
        # The node comes back: a subscriber connects, then the glue may reach it again.
        go_down.start()
        after_down = ChannelNumbers(go_down, CHANNELS)
        gate.down = False
        wait_until(lambda: backlog() == 0, 180, interval=0.5, what="the backlog drained")
        wait_until(lambda: after_down.count() == 300, 60, interval=0.5, what="the held messages delivered")
        expected = list(range(100))
        for channel in CHANNELS:
            assert on_stay_up.received[channel] == expected, channel
            assert before_down.received[channel] + after_down.received[channel] == expected, channel
        # Each job's messages are delivered or held before it is finished, so its finish may
        # still be on its way: the finisher writes it at its next try, up to the longest retry
        # backoff (5 s) after Redis came back, and the node down may take its backlog sooner.
        settled = {"finishes": 400, "claimed": 0, "ready": 0, "stalled": 0}

        def counts_now() -> dict:
            counts = feed_counts(redis_aof.client(), "comments")
            return {name: counts[name] for name in settled}

        try:
            wait_until(lambda: counts_now() == settled, 30, interval=0.5, what="every job finished")
        except TimeoutError:
            pass  # the assertion below says how far they got
        counts = feed_counts(redis_aof.client(), "comments")
        # Every count at once, with the glue's log: a count that is off says which path lost a job.
        assert {name: counts[name] for name in settled} == settled, (
            f"{counts}\nglue log {glue.log_path}, its tail:\n{glue.log_tail()}"
        )
        assert glue.alive()
        assert " died" not in glue.log() and "Traceback" not in glue.log()
    finally:
        glue.terminate()
        for subscribers in (on_stay_up, before_down, after_down):
            if subscribers is not None:
                subscribers.close()
        gate.close()
        stay_up.cleanup()
        go_down.cleanup()
