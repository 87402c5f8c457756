"""ansible/playbooks/rolling-restart.yml while jobs flow at 100 a second: never
are two push nodes down at once, and subscribers miss nothing."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from support.cluster import (
    REPO,
    FailoverSubscriber,
    HealthMonitor,
    connections,
    describe_gaps,
    missing_and_order,
    repeats_on,
)
from support.glue_process import wait_until

RATE = 100


@pytest.fixture(scope="module")
def rolling_restart(cluster, push_nodes):
    """Runs the playbook once while publishing; the tests below read its outcome."""
    channel = f"rolling-{uuid.uuid4().hex[:8]}"
    # One subscriber homed on each node: it fails over when its node restarts
    # and returns once the node is back, which the playbook waits for.
    shared_ids = push_nodes[0].flavour == "push_stream"
    subscribers = [
        FailoverSubscriber(push_nodes, channel, home=i, return_home=True, shared_ids=shared_ids)
        for i in range(len(push_nodes))
    ]
    for subscriber in subscribers:
        subscriber.wait_connected()
    pids_before = {node.name: nginx_pid(node) for node in push_nodes}
    monitor = HealthMonitor(push_nodes)
    glue_clock = cluster.glue.run("date +%s").stdout.strip()
    # Enough jobs to outlast the playbook; stopped when it is done.
    producer = cluster.produce(channel, rate=RATE, count=RATE * 600)
    try:
        wait_until(lambda: len(producer.ids) >= RATE, 30, what="the producer's first second")
        playbook = subprocess.run(
            ["ansible-playbook", "-i", str(cluster.inventory), "rolling-restart.yml"],
            cwd=REPO / "ansible" / "playbooks",
            capture_output=True,
            text=True,
            env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"},
            timeout=600,
        )
    finally:
        producer.stop()
        monitor.stop()
    ids = list(producer.ids)
    for subscriber in subscribers:
        subscriber.wait_for(ids, timeout=60)
        subscriber.stop()
    pids_after = {node.name: nginx_pid(node) for node in push_nodes}
    return {
        "playbook": playbook,
        "monitor": monitor,
        "subscribers": subscribers,
        "ids": ids,
        "restarted": {name for name in pids_before if pids_before[name] != pids_after[name]},
        # What the glue said meanwhile (node failures, backlogs), for a failed check.
        "glue_log": cluster.glue.run(
            f"journalctl -o short-precise --no-pager -u 'glue@*' --since @{glue_clock} | tail -n 80"
        ).stdout,
    }


def nginx_pid(node) -> str:
    return node.host_entry.run("systemctl show -p MainPID --value nginx.service").stdout.strip()


def test_the_playbook_restarts_every_push_node(rolling_restart, push_nodes):
    playbook = rolling_restart["playbook"]
    assert playbook.returncode == 0, playbook.stdout[-3000:] + playbook.stderr[-2000:]
    down = {name for names in rolling_restart["monitor"].moments_down() for name in names}
    print(
        f"rolling restart: nginx restarted on {sorted(rolling_restart['restarted'])}, seen down: "
        f"{sorted(down)} (a quick restart can fall between two health probes); "
        f"{len(rolling_restart['ids'])} jobs published"
    )
    assert rolling_restart["restarted"] == {node.name for node in push_nodes}, "every push node was restarted"


def test_never_two_push_nodes_down_at_once(rolling_restart):
    both = [names for names in rolling_restart["monitor"].moments_down() if len(names) > 1]
    assert both == []
    assert len(rolling_restart["monitor"].samples) > 100


def test_subscribers_miss_nothing(rolling_restart, push_nodes):
    """Every message reaches both subscribers across both restarts (the order is printed)."""
    if push_nodes[0].flavour != "push_stream":
        reason = (
            "nchan flavour: a subscriber of a restarted node cannot recover from the other node "
            "(ids differ per node); only the never-two-down property is checked"
        )
        print(reason)
        pytest.skip(reason)
    ids = rolling_restart["ids"]
    start = min(s.timeline[0][0] for s in rolling_restart["subscribers"])
    print(rolling_restart["monitor"].down_windows(start))
    for subscriber in rolling_restart["subscribers"]:
        missing, in_order, duplicates = missing_and_order(ids, subscriber.received)
        print(
            f"subscriber homed on {push_nodes[subscriber.home].name}: switches {subscriber.switches}, "
            f"{duplicates} duplicates, {'in' if in_order else 'not in'} enqueue order"
        )
        print(describe_gaps([], ids, subscriber, start))
        assert subscriber.switches, "the subscriber's node restarted under it"
        assert missing == [], (
            f"{len(missing)} of {len(ids)} messages missed\n"
            f"{describe_gaps(missing, ids, subscriber, start)}\n"
            f"the glue's log:\n{rolling_restart['glue_log']}"
        )


def test_subscribers_failing_over_find_every_message_on_the_node_restarted_first(rolling_restart, push_nodes):
    """The playbook restarts the next node only once the glue has delivered what the last one
    missed, so subscribers of the next node fail over to a node that has every message: the
    messages after their Last-Event-ID, none they had already (a node still without its
    backlog would not know that id, and sends what it gets later again)."""
    if push_nodes[0].flavour != "push_stream":
        reason = "nchan flavour: ids differ per node, so a failover gets no replay"
        print(reason)
        pytest.skip(reason)
    # The subscriber whose home went down last failed over to a node restarted before.
    failovers = [(connections(s)[1][0], s) for s in rolling_restart["subscribers"] if len(connections(s)) > 1]
    assert len(failovers) == len(push_nodes), "every subscriber failed over once its node restarted"
    _, last = max(failovers, key=lambda pair: pair[0])
    segments = connections(last)
    _, node, got = segments[1]
    print(f"{push_nodes[last.home].name}'s subscriber failed over to {node}: {len(got)} messages there")
    assert got, f"nothing came from {node} after the failover"
    assert repeats_on(segments, 1) == 0, describe_gaps([], rolling_restart["ids"], last)
