"""Private channels across hosts: `realtime-glue sign` on the glue node mints a URL
that every push node accepts, because the inventory gives the glue and the push
nodes one key set (ansible/playbooks/group_vars/all/main.yml; the Vagrantfile's
test-only key)."""

from __future__ import annotations

import json
import shlex
import uuid

import pytest


@pytest.fixture
def private_channel() -> str:
    return f"private-t-{uuid.uuid4().hex[:10]}"


def signed_query(cluster, channel: str, ttl: int = 300) -> str:
    """The query string of a URL for `channel` signed on the glue node, as its service user."""
    command = f"sudo -u realtime-glue realtime-glue sign {shlex.quote(channel)} --ttl {ttl} --json"
    return json.loads(cluster.glue.run(command).stdout)["query"]


def test_a_url_signed_on_the_glue_node_opens_the_channel_on_both_push_nodes(
    cluster, push_nodes, private_channel
):
    query = signed_query(cluster, private_channel)
    streams = [node.events(f"{private_channel}?{query}", timeout=30) for node in push_nodes]
    try:
        job = {"channel": private_channel, "event": "comment", "data": {"text": "for the signed only"}}
        job_id = cluster.enqueue(json.dumps(job))
        bodies = [json.loads(stream.next_event().data) for stream in streams]
    finally:
        for stream in streams:
            stream.close()
    for body in bodies:
        assert body["id"] == job_id
        assert body["data"] == {"text": "for the signed only"}


def test_the_push_nodes_refuse_the_channel_unsigned_or_tampered(cluster, push_nodes, private_channel):
    query = signed_query(cluster, private_channel)
    sig = query.rpartition("sig=")[2]
    tampered = query.replace(f"sig={sig}", "sig=" + ("B" if sig[0] == "A" else "A") + sig[1:])
    accept = {"Accept": "text/event-stream"}
    for node in push_nodes:
        assert node.request("GET", f"/ev/{private_channel}", headers=accept)[0] == 403, node.name
        assert node.request("GET", f"/ev/{private_channel}?{tampered}", headers=accept)[0] == 403, node.name
