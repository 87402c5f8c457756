"""A job enqueued on the glue node reaches subscribers on every push node."""

from __future__ import annotations

import json


def comment(channel: str, text: str = "hello") -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"text": text, "email": "a@b.c"}})


def test_a_job_reaches_eventsource_and_websocket_subscribers_on_both_push_nodes(cluster, push_nodes, channel):
    streams = [node.events(channel, timeout=30) for node in push_nodes]
    sockets = [node.websocket(channel, timeout=30) for node in push_nodes]
    try:
        job_id = cluster.enqueue(comment(channel, "across hosts"))
        events = [stream.next_event() for stream in streams]
        frames = [json.loads(ws.receive()) for ws in sockets]
    finally:
        for subscriber in [*streams, *sockets]:
            subscriber.close()

    bodies = [json.loads(event.data) for event in events]
    for body in [*bodies, *frames]:
        # The anonymize stage dropped the e-mail address on the way.
        assert body == {
            "id": job_id,
            "channel": channel,
            "event": "comment",
            "data": {"text": "across hosts"},
        }
    if push_nodes[0].flavour == "push_stream":
        assert [event.id for event in events] == [job_id, job_id]
    else:
        print(
            f"nchan flavour: nchan assigns its own EventSource ids ({[e.id for e in events]}); "
            "the same job id is in every body"
        )


def test_every_job_of_a_burst_reaches_both_nodes(cluster, push_nodes, channel):
    streams = [node.events(channel, timeout=30) for node in push_nodes]
    try:
        ids = cluster.produce(channel, rate=50, count=100).wait()
        received = [[json.loads(stream.next_event().data)["id"] for _ in ids] for stream in streams]
    finally:
        for stream in streams:
            stream.close()
    # The glue publishes concurrently: every job arrives once, in no promised order.
    assert [sorted(r) for r in received] == [sorted(ids), sorted(ids)]
