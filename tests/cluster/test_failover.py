"""A push node stops while jobs flow: its subscribers fail over to the other
node with Last-Event-ID and miss nothing; back, it drains its backlog and
carries on. (push_stream flavour: only there do both nodes store every message
under the same id.)"""

from __future__ import annotations

import json
import time

import pytest

from support.cluster import FailoverSubscriber, missing_and_order
from support.glue_process import wait_until


def needs_shared_event_ids(push_nodes):
    if push_nodes[0].flavour != "push_stream":
        reason = (
            "nchan flavour: each node numbers its messages itself, so a Last-Event-ID from one "
            "node means nothing to the other (the push_stream flavour, the default, shares them)"
        )
        print(reason)
        pytest.skip(reason)


def test_subscribers_fail_over_and_the_stopped_node_catches_up(cluster, push_nodes, channel):
    needs_shared_event_ids(push_nodes)
    first, second = push_nodes
    subscriber = FailoverSubscriber(push_nodes, channel, home=0)
    subscriber.wait_connected()
    producer = cluster.produce(channel, rate=20, count=300)
    try:
        wait_until(lambda: len(subscriber.received) >= 60, 60, what="60 messages before the stop")
        first.host_entry.run("systemctl stop nginx.service")
        stopped_at = len(producer.ids)  # every job from here on can only reach the first node later
        ids = producer.wait()
        subscriber.wait_for(ids, timeout=60)

        missing, in_order, duplicates = missing_and_order(ids, subscriber.received)
        assert subscriber.switches and subscriber.switches[0] == (first.name, second.name)
        assert missing == [], f"{len(missing)} of {len(ids)} messages missed across the failover"
        # The glue publishes concurrently: the order is not promised, so only shown.
        print(
            f"failover: {len(ids)} messages, none missed, {duplicates} duplicates, "
            f"{'in' if in_order else 'not in'} enqueue order, switches {subscriber.switches}"
        )

        # Back: the glue drains what it held for the node, in order, into its store.
        first.host_entry.run("systemctl start nginx.service")
        label = f"{first.host}:{first.cluster_port}"
        wait_until(lambda: cluster.glue_status()["backlog"].get(label) == 0, 60, what="backlog drained")
        held = ids[stopped_at + 1]
        with first.events(channel, last_event_id=held, timeout=30) as replay:
            replayed = [json.loads(replay.next_event().data)["id"] for _ in ids[stopped_at + 2 :]]
        assert sorted(replayed) == sorted(ids[stopped_at + 2 :])

        # And carries on with new jobs.
        with first.events(channel, timeout=30) as stream:
            time.sleep(0.2)
            job_id = cluster.enqueue(json.dumps({"channel": channel, "event": "comment", "data": {"n": -1}}))
            assert json.loads(stream.next_event().data)["id"] == job_id
    finally:
        subscriber.stop()
        producer.stop()
        first.host_entry.run("systemctl start nginx.service", check=False)
