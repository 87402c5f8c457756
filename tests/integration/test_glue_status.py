"""`realtime-glue status` and `stalled` as an operator reads them, against a real redis-server."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed, JobState
from support.glue_process import GlueProcess, write_config


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-status-"))


def comment(n: int, channel: str = "news") -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"n": n}})


def test_status_shows_each_job_state(workdir, redis_server, push_node):
    config = write_config(
        workdir, redis_server.url, [push_node.base_url], '[pipelines.comments]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "comments")  # not started: the jobs stay where they are put
    feed = JobFeed(redis_server.client(), "comments", worker_id="operator")
    feed.put_many([comment(n) for n in range(3)])
    first, _still_claimed = feed.claim(2)
    feed.stall(first.id, "a reason")
    text = glue.cli("status", "--sample", "0")
    assert text.returncode == 0, text.stderr
    assert "ready 1  claimed 1  stalled 1" in text.stdout
    (row,) = json.loads(glue.cli("status", "--json", "--sample", "0").stdout)
    assert {state.value: row[state.value] for state in JobState} == {"ready": 1, "claimed": 1, "stalled": 1}


def test_status_warns_as_redis_memory_nears_its_maxmemory(workdir, redis_server, push_node):
    config = write_config(
        workdir, redis_server.url, [push_node.base_url], '[pipelines.comments]\npreset = "json-anon-http"\n'
    )
    glue = GlueProcess(config, "comments")
    client = redis_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "0")
    (row,) = json.loads(glue.cli("status", "--json", "--sample", "0").stdout)
    assert row["redis_memory"]["max"] == 0
    assert "maxmemory" in row["redis_memory"]["warning"]  # no limit: a long outage can fill the host
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", str(int(used / 0.9)))  # 90 % used
    text = glue.cli("status", "--sample", "0")
    assert text.returncode == 0, text.stderr
    assert "WARNING: Redis uses 9" in text.stdout and "% of its maxmemory" in text.stdout
    (row,) = json.loads(glue.cli("status", "--json", "--sample", "0").stdout)
    assert row["redis_memory"]["policy"] == "noeviction" and row["redis_memory"]["used"] >= used
    client.config_set("maxmemory", str(used * 4))
    (row,) = json.loads(glue.cli("status", "--json", "--sample", "0").stdout)
    assert row["redis_memory"]["warning"] is None
    assert "WARNING" not in glue.cli("status", "--sample", "0").stdout
