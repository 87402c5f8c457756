"""Every character a channel id may have (the json stage allows [A-Za-z0-9_-:@.=])
gets a job through the real glue to an EventSource subscriber of that channel, on
both push node flavours.

nchan does not decode `$arg_id`: a publisher URL with `%3A` publishes to a channel
literally named `a%3Ab` while the subscriber of `/ev/a:b` listens on `a:b`, so the
job is answered 202 and the message never arrives. The glue leaves `:`, `@`, `=`
unencoded (legal in a query), which both flavours read the same.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from support.glue_process import GlueProcess, feed_counts, wait_until, write_config
from support.push_node import PushNode

# One channel per allowed character class, and one with all of them.
CHANNELS = [
    "AZaz09",
    "under_score",
    "da-sh",
    "co:lon",
    "at@sign",
    "do.t",
    "eq=ual",
    "All_of-them:1@x.y=z",
]


@pytest.fixture(params=["push_stream", "nchan"])
def node(request):
    with PushNode(request.param) as started:
        yield started


def test_every_allowed_channel_character_reaches_an_eventsource_subscriber(node, redis_server):
    directory = Path(tempfile.mkdtemp(prefix="glue-channel-ids-"))
    config = write_config(
        directory, redis_server.url, [node.cluster_url], '[pipelines.ids]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "ids").start()
    streams = {}
    try:
        for channel in CHANNELS:
            streams[channel] = node.events(channel)
            node.wait_for_subscribers(channel)
        for channel in CHANNELS:
            job = {"channel": channel, "event": "comment", "data": {"text": f"for {channel}"}}
            glue.cli("enqueue", "ids", json.dumps(job))
        received = {channel: json.loads(stream.next_event().data) for channel, stream in streams.items()}
        wait_until(
            lambda: feed_counts(redis_server.client(), "ids")["finishes"] == len(CHANNELS),
            10,
            what="finishes",
        )
    finally:
        for stream in streams.values():
            stream.close()
        glue.terminate()
    assert {channel: body["data"]["text"] for channel, body in received.items()} == {
        channel: f"for {channel}" for channel in CHANNELS
    }
    assert all(body["channel"] == channel for channel, body in received.items())
