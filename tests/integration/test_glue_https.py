"""The glue publishing over HTTPS (a node URL https://NAME:PORT): a real nginx push
node whose cluster listener serves TLS (push_stream_cluster_tls), a throwaway CA
made here, the glue trusting only that CA through [push] ca_file.

What an operator would notice: a node whose certificate does not carry the name
in its URL is refused (the glue's log says why, and its messages wait in that
node's backlog); once the node serves a certificate for its name, every message
arrives, in order per channel, still pipelined over a few keep-alive TLS
connections. A CA file that is not one stops the glue with exit 78 naming the key.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config
from support.push_node import PushNode, ServerTLS
from support.tls import TestCA

CHANNELS = 3
# Within the 20 messages a channel stores, so a subscriber can replay them all.
PER_CHANNEL = 16
# The name the test's own clients use; the glue asks for "localhost".
OTHER_NAME = "push.example"


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-https-"))


@pytest.fixture
def ca(workdir):
    return TestCA.create(workdir / "ca")


def served(ca: TestCA, names: list[str]) -> ServerTLS:
    certificate = ca.issue(names)
    return ServerTLS(certificate.certificate_path, certificate.key_path, ca.certificate_path, OTHER_NAME)


def pipeline_toml() -> str:
    return '[pipelines.comments]\npreset = "json-anon-http"\nconcurrency = 16\n'


def comment(channel: str, n: int) -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"n": n}})


def glue_url(node: PushNode) -> str:
    return f"https://localhost:{node.cluster_port}"


def received_in_order(events, count: int) -> list[int]:
    numbers = []
    while len(numbers) < count:
        numbers.append(json.loads(events.next_event().data)["data"]["n"])
    return numbers


def test_a_node_serving_the_wrong_name_is_refused_and_gets_everything_once_it_serves_its_own(
    workdir, ca, redis_server
):
    # First the node's certificate names only push.example: not the name the glue asks for.
    wrong = served(ca, [OTHER_NAME])
    with PushNode(tls=wrong, overrides={"push_stream_cluster_tls": True}) as node:
        assert node.cluster_url.startswith("https://")
        label = f"localhost:{node.cluster_port}"
        config = write_config(
            workdir,
            redis_server.url,
            [glue_url(node)],
            pipeline_toml(),
            push_extra=f'ca_file = "{ca.certificate_path}"',
        )
        glue = GlueProcess(config, "comments").start()
        feed = JobFeed(redis_server.client(), "comments")
        channels = [f"https-{uuid.uuid4().hex[:8]}-{c}" for c in range(CHANNELS)]
        try:
            half = PER_CHANNEL // 2
            ids = feed.put_many([comment(channel, n) for n in range(half) for channel in channels])
            first_ids = dict(zip(channels, ids[:CHANNELS], strict=True))  # n = 0 of each channel

            # Refused: every job finishes with its message held in the node's backlog.
            wait_until(
                lambda: feed_counts(redis_server.client(), "comments")["finishes"] == CHANNELS * half,
                30,
                what="the jobs finished into the backlog",
            )

            def held() -> int:
                return json.loads(glue.cli("status", "--json", "--sample", "0").stdout)[0]["backlog"][label]

            wait_until(lambda: held() == CHANNELS * half, 30, what="every message held")
            log = glue.log()
            failing = [line for line in log.splitlines() if f"push node {label} is failing" in line]
            print(failing[0] if failing else log[-2000:])
            # The first reason may be a timeout on a slow day; the certificate's follows.
            refused = [line for line in failing if "CERTIFICATE_VERIFY_FAILED" in line]
            assert refused and "localhost" in refused[0]  # the name it asked for and did not get
            assert stored(node, channels[0]) == 0

            # The node now serves a certificate for its name too (a renewal, a reload).
            node.use_certificate(served(ca, [OTHER_NAME, "localhost"]))
            node.reload()
            feed.put_many([comment(channel, n) for n in range(half, PER_CHANNEL) for channel in channels])
            wait_until(lambda: held() == 0, 60, interval=0.5, what="the backlog drained")
            wait_until(
                lambda: feed_counts(redis_server.client(), "comments")["finishes"] == CHANNELS * PER_CHANNEL,
                30,
                what="every job finished",
            )
            # Every message reached the node once, in order: a subscriber replaying
            # each channel after its first message (Last-Event-ID) gets the rest.
            for channel in channels:
                assert stored(node, channel) == PER_CHANNEL
                with node.events(channel, last_event_id=first_ids[channel], timeout=30) as events:
                    assert received_in_order(events, PER_CHANNEL - 1) == list(range(1, PER_CHANNEL))
        finally:
            glue.terminate()

        # Pipelined: the POSTs went over a few keep-alive TLS connections.
        posts = [line for line in node.access_log.splitlines() if '"POST /pub?id=https-' in line]
        connections = {re.search(r"connection=(\d+)", line).group(1) for line in posts}
        protocols = {re.search(r"tls=(\S*)", line).group(1) for line in posts}
        print(f"{len(posts)} POSTs over {len(connections)} TLS connections ({', '.join(sorted(protocols))})")
        assert len(posts) >= CHANNELS * PER_CHANNEL
        assert protocols <= {"TLSv1.3", "TLSv1.2"} and protocols
        assert len(connections) < len(posts) // 4


def stored(node: PushNode, channel: str) -> int:
    status, _, body = node.request("GET", f"/channels-stats?id={channel}", listener="cluster")
    return int(json.loads(body)["published_messages"]) if status == 200 else 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("not a certificate\n", "no PEM CA certificate")],
    ids=["missing", "not-a-ca"],
)
def test_a_ca_file_that_is_not_one_stops_the_glue_naming_the_key(workdir, redis_server, content, problem):
    ca_file = workdir / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    config = write_config(
        workdir,
        redis_server.url,
        ["https://localhost:8443"],
        pipeline_toml(),
        push_extra=f'ca_file = "{ca_file}"',
    )
    result = GlueProcess(config, "comments").cli("check-config")
    print(result.stderr.strip())
    assert result.returncode == 78  # EX_CONFIG: systemd does not restart it
    assert "push.ca_file" in result.stderr and problem in result.stderr
    run = GlueProcess(config, "comments").cli("run", "comments")
    assert run.returncode == 78
