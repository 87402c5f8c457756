"""The real `realtime-glue run` process: feed -> stages -> push nodes -> EventSource subscribers."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

import pytest

from realtime_glue.stages.encrypt import open_sealed
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-test-"))


def comment(channel="news", **data):
    return json.dumps({"channel": channel, "event": "comment", "data": data or {"text": "hello"}})


def run_glue(workdir, redis_server, nodes, pipelines, name="comments", extra=""):
    config = write_config(workdir, redis_server.url, [n.cluster_url for n in nodes], pipelines, extra)
    return GlueProcess(config, name).start()


def test_a_job_reaches_an_eventsource_subscriber_anonymized(workdir, redis_server, push_node):
    glue = run_glue(workdir, redis_server, [push_node], '[pipelines.comments]\npreset = "json-anon-http"\n')
    try:
        with push_node.events("news") as events:
            push_node.wait_for_subscribers("news")
            job_id = glue.cli("enqueue", "comments", comment(text="hi", email="a@b.c")).stdout.strip()
            event = events.next_event()
        body = json.loads(event.data)
        assert body == {"id": job_id, "channel": "news", "event": "comment", "data": {"text": "hi"}}
        if push_node.flavour == "push_stream":
            assert event.id == job_id  # the Event-ID header became the EventSource id
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["finishes"] == 1, 10, what="finish")
        assert feed_counts(redis_server.client(), "comments")["claimed"] == 0
    finally:
        assert glue.terminate() == 0


def test_every_node_gets_the_message_with_the_same_event_id(workdir, redis_server, push_nodes):
    glue = run_glue(workdir, redis_server, push_nodes, '[pipelines.comments]\npreset = "json-anon-http"\n')
    try:
        streams = [node.events("news") for node in push_nodes]
        for node in push_nodes:
            node.wait_for_subscribers("news")
        job_id = glue.cli("enqueue", "comments", comment()).stdout.strip()
        events = [stream.next_event() for stream in streams]
        assert [json.loads(e.data)["id"] for e in events] == [job_id, job_id]
        if push_nodes[0].flavour == "push_stream":
            assert [e.id for e in events] == [job_id, job_id]
        else:
            print("nchan flavour: nchan assigns its own EventSource ids; the job id is in the body")
        for stream in streams:
            stream.close()
    finally:
        glue.terminate()


def test_bad_jobs_are_stalled_with_a_reason_and_good_ones_still_flow(workdir, redis_server, push_node):
    glue = run_glue(workdir, redis_server, [push_node], '[pipelines.comments]\npreset = "json-anon-http"\n')
    bad = {
        "not json": "payload is not JSON",
        json.dumps({"data": {}}): "payload has no channel",
        comment(channel="a/b"): "characters outside",
        json.dumps({"channel": "x", "data": "y" * 70_000}): "over the 65536-byte limit",
    }
    try:
        with push_node.events("news") as events:
            push_node.wait_for_subscribers("news")
            ids = {
                glue.cli("enqueue", "comments", payload).stdout.strip(): why for payload, why in bad.items()
            }
            good = glue.cli("enqueue", "comments", comment()).stdout.strip()
            assert json.loads(events.next_event().data)["id"] == good
        # Not UTF-8: written straight into Redis, as a foreign producer might.
        from realtime_glue.jobqueue import JobFeed

        latin1 = JobFeed(redis_server.client(), "comments").put(b'{"channel":"x","data":"\xe9"}')
        ids[latin1] = "not UTF-8"
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["stalled"] == len(ids), 10)
        listed = json.loads(glue.cli("stalled", "comments", "--json").stdout)
        reasons = {row["id"]: row["reason"] for row in listed}
        for job_id, why in ids.items():
            assert why in reasons[job_id]
        # Stalled jobs keep their payload: nothing is lost, and retry puts them back.
        assert redis_server.client().hlen("feed.items:comments") == len(ids)
        assert glue.alive()
    finally:
        glue.terminate()


def test_secure_pipeline_delivers_data_only_key_holders_can_read(workdir, redis_server, push_node):
    key = os.urandom(32)
    key_file = workdir / "comments.key"
    key_file.write_bytes(base64.b64encode(key))
    key_file.chmod(0o600)
    pipelines = (
        f'[pipelines.comments]\npreset = "json-secure-http"\nencrypt = {{ key_file = "{key_file}" }}\n'
    )
    glue = run_glue(workdir, redis_server, [push_node], pipelines)
    try:
        with push_node.events("news") as events:
            push_node.wait_for_subscribers("news")
            glue.cli("enqueue", "comments", comment(text="secret", email="a@b.c"))
            body = json.loads(events.next_event().data)
        assert "secret" not in json.dumps(body)
        assert open_sealed(key, "news", body["data"]) == {"text": "secret"}
    finally:
        glue.terminate()


def test_a_key_file_others_can_read_is_refused_naming_the_key(workdir, redis_server, push_node):
    key_file = workdir / "loose.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o644)
    pipelines = (
        f'[pipelines.comments]\npreset = "json-secure-http"\nencrypt = {{ key_file = "{key_file}" }}\n'
    )
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipelines)
    result = GlueProcess(config, "comments").cli("check-config")
    assert result.returncode == 78  # EX_CONFIG
    assert "pipelines.comments.encrypt.key_file" in result.stderr
    assert "readable by others" in result.stderr
    # `run` (what systemd starts) says the same and exits 78, so the unit does not restart.
    run = GlueProcess(config, "comments").cli("run", "comments")
    assert run.returncode == 78
    assert "config error: pipelines.comments.encrypt.key_file: key file" in run.stderr


def test_file_pipeline_writes_json_lines(workdir, redis_server, push_node):
    out = workdir / "out" / "comments.jsonl"
    pipelines = (
        f'[pipelines.archive]\npreset = "json-anon-file"\nfile = {{ path = "{out}", fsync = "always" }}\n'
    )
    glue = run_glue(workdir, redis_server, [push_node], pipelines, name="archive")
    try:
        ids = glue.cli("enqueue", "archive", input="\n".join(comment(n=i) for i in range(5))).stdout.split()
        wait_until(lambda: feed_counts(redis_server.client(), "archive")["finishes"] == 5, 10)
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(line["id"] for line in lines) == sorted(ids)
        assert {json.loads(line["body"])["data"]["n"] for line in lines} == set(range(5))
    finally:
        glue.terminate()


def test_a_shadow_pipeline_reads_a_mirror_of_the_live_feed(workdir, redis_server, push_node):
    out = workdir / "shadow.jsonl"
    pipelines = f"""
[pipelines.comments]
preset = "json-anon-http"
mirror_feed = "comments.shadow"

[pipelines.shadow]
feed = "comments.shadow"
preset = "json-anon-file"
file = {{ path = "{out}" }}
"""
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipelines)
    live = GlueProcess(config, "comments").start()
    shadow = GlueProcess(config, "shadow").start()
    try:
        with push_node.events("news") as events:
            push_node.wait_for_subscribers("news")
            ids = live.cli(
                "enqueue", "comments", input="\n".join(comment(n=i) for i in range(3))
            ).stdout.split()
            received = [json.loads(events.next_event().data)["id"] for _ in ids]
        assert sorted(received) == sorted(ids)
        wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 3, 10, what="shadow output")
        assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == sorted(ids)
    finally:
        live.terminate()
        shadow.terminate()


def test_sigterm_finishes_in_flight_jobs_and_loses_none(workdir, redis_server, push_node):
    glue = run_glue(workdir, redis_server, [push_node], '[pipelines.comments]\npreset = "json-anon-http"\n')
    glue.cli("enqueue", "comments", input="\n".join(comment(n=i) for i in range(2000)))
    assert glue.terminate() == 0
    counts = feed_counts(redis_server.client(), "comments")
    # Whatever was claimed was finished or given back: nothing is left claimed.
    assert counts["claimed"] == 0
    assert counts["ready"] + counts["finishes"] == 2000
    # The next run finishes the rest.
    glue.start()
    try:
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["finishes"] == 2000, 30)
    finally:
        glue.terminate()


def test_metrics_count_processed_and_stalled_jobs(workdir, redis_server, push_node):
    import urllib.request

    from support.ports import free_port

    port = free_port()
    config = write_config(
        workdir,
        redis_server.url,
        [push_node.cluster_url],
        '[pipelines.comments]\npreset = "json-anon-http"\n',
    )
    config.write_text(config.read_text().replace('listen = ""', f'listen = "127.0.0.1:{port}"'))
    glue = GlueProcess(config, "comments").start()
    try:
        glue.cli("enqueue", "comments", input="\n".join([comment(), comment(), "broken"]))
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["finishes"] == 2, 10)

        def metric(name):
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
            return None

        wait_until(lambda: metric("glue_jobs_stalled_total") == 1.0, 10, what="stalled metric")
        # Counted once Redis answers the finish, a moment after the feed shows it.
        wait_until(lambda: metric("glue_jobs_processed_total") == 2.0, 10, what="processed metric")
        assert metric("glue_publish_seconds_count") == 2.0
        assert metric("glue_jobs_claimed_total") == 3.0  # the stalled one was claimed too
        assert 1.0 <= metric("glue_claims_total") <= 3.0
    finally:
        glue.terminate()


def test_retry_puts_stalled_jobs_back_and_run_names_an_unknown_pipeline(workdir, redis_server, push_node):
    glue = run_glue(workdir, redis_server, [push_node], '[pipelines.comments]\npreset = "json-anon-http"\n')
    try:
        job_id = glue.cli("enqueue", "comments", "{oops").stdout.strip()
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["stalled"] == 1, 10)
        # Fix the payload in place (as an operator might), then retry it.
        redis_server.client().hset("feed.items:comments", job_id, comment())
        assert glue.cli("retry", "comments", "--all").returncode == 0
        wait_until(lambda: feed_counts(redis_server.client(), "comments")["finishes"] == 1, 10)
        assert feed_counts(redis_server.client(), "comments")["stalled"] == 0
    finally:
        glue.terminate()
    unknown = glue.cli("run", "nope")
    assert unknown.returncode == 78
    assert "pipelines.nope" in unknown.stderr


def test_a_channels_messages_reach_every_node_in_the_order_they_were_queued(
    workdir, redis_server, push_nodes
):
    """Same order on every node: what lets a browser fail over with Last-Event-ID and miss nothing."""
    glue = run_glue(workdir, redis_server, push_nodes, '[pipelines.comments]\npreset = "json-anon-http"\n')
    try:
        streams = [node.events("ordered") for node in push_nodes]
        for node in push_nodes:
            node.wait_for_subscribers("ordered")
        # Interleave other channels so the worker runs many jobs at once.
        payloads = []
        for n in range(600):
            payloads.append(comment(channel="ordered", n=n))
            payloads.append(comment(channel=f"other-{n % 7}", n=n))
        ids = glue.cli("enqueue", "comments", input="\n".join(payloads)).stdout.split()
        expected = ids[0::2]
        for stream in streams:
            received = [json.loads(stream.next_event().data)["id"] for _ in expected]
            assert received == expected
            stream.close()
    finally:
        glue.terminate()


def test_an_old_and_a_new_pipeline_share_a_feed(workdir, redis_server, push_node):
    """Side by side on one feed: each job is taken by exactly one of them."""
    out = workdir / "new.jsonl"
    pipelines = f"""
[pipelines.old]
feed = "comments"
preset = "json-anon-http"

[pipelines.new]
feed = "comments"
preset = "json-anon-file"
file = {{ path = "{out}" }}
"""
    config = write_config(workdir, redis_server.url, [push_node.cluster_url], pipelines)
    old = GlueProcess(config, "old").start()
    new = GlueProcess(config, "new").start()
    try:
        with push_node.events("news") as events:
            push_node.wait_for_subscribers("news")
            ids = old.cli("enqueue", "old", input="\n".join(comment(n=i) for i in range(400))).stdout.split()
            wait_until(lambda: feed_counts(redis_server.client(), "comments")["finishes"] == 400, 30)
            written = (
                [json.loads(line)["id"] for line in out.read_text().splitlines()] if out.exists() else []
            )
            published = [json.loads(events.next_event().data)["id"] for _ in range(400 - len(written))]
        assert sorted(written + published) == sorted(ids)
        print(f"old pipeline published {len(published)}, new pipeline wrote {len(written)}")
    finally:
        old.terminate()
        new.terminate()
