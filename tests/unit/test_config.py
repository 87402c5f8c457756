"""Loading the config file: TOML and YAML, defaults, and errors that name the bad key."""

from __future__ import annotations

import pytest

from realtime_glue.config import load_config, parse_config
from realtime_glue.errors import ConfigError

TOML = b"""
[redis]
url = "redis://127.0.0.1:6380/2"

[queue]
visibility_timeout = 12
max_failures = 3

[push]
nodes = ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
timeout = 2

[pipelines.comments]
preset = "json-anon-http"
concurrency = 8

[pipelines.comments.anonymize]
drop = ["author.email"]

[pipelines.archive]
feed = "comments-archive"
stages = ["json", "format", "file"]
[pipelines.archive.file]
path = "/var/lib/realtime-glue/archive.jsonl"
"""

YAML = b"""
redis:
  url: redis://127.0.0.1:6380/2
queue:
  visibility_timeout: 12
  max_failures: 3
push:
  nodes: [http://10.0.0.1:8080, http://10.0.0.2:8080]
  timeout: 2
pipelines:
  comments:
    preset: json-anon-http
    concurrency: 8
    anonymize:
      drop: [author.email]
  archive:
    feed: comments-archive
    stages: [json, format, file]
    file:
      path: /var/lib/realtime-glue/archive.jsonl
"""


@pytest.mark.parametrize(("raw", "name"), [(TOML, "glue.toml"), (YAML, "glue.yaml"), (YAML, "glue.yml")])
def test_toml_and_yaml_load_the_same(raw, name, tmp_path):
    path = tmp_path / name
    path.write_bytes(raw)
    config = load_config(str(path))
    assert config.redis_url == "redis://127.0.0.1:6380/2"
    assert config.redis_timeout == 5.0  # a hung Redis is noticed by default
    assert config.visibility_timeout == 12.0 and isinstance(config.visibility_timeout, float)
    assert config.max_failures == 3
    assert config.claim_batch == 64
    assert config.push_nodes == ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
    assert config.push_timeout == 2.0
    comments = config.pipeline("comments")
    assert comments.feed == "comments"
    assert comments.stages == ["json", "anonymize", "format", "validate", "http"]
    assert comments.concurrency == 8
    assert comments.stage_options["anonymize"] == {"drop": ["author.email"]}
    # The http stage inherits the push nodes and timeout.
    assert comments.stage_options["http"] == {
        "nodes": config.push_nodes,
        "timeout": 2,
        "message_ttl": 300.0,  # push_stream_message_ttl's default
        "backlog_limit": 100_000,
        "max_message_size": 65536,  # push_stream_max_message_size's default (64k)
        "ca_file": "",  # [push] ca_file: the system's trust store for https:// nodes
    }
    archive = config.pipeline("archive")
    assert archive.feed == "comments-archive"
    assert archive.stages == ["json", "format", "file"]
    assert archive.concurrency == 256


def test_an_empty_file_gives_the_defaults():
    config = parse_config(b"", "glue.toml")
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.claim_linger == 0.003
    assert config.metrics_listen == "127.0.0.1:9310"
    assert config.pipelines == {}
    assert parse_config(b"", "glue.yaml").redis_url == config.redis_url


def test_password_comes_from_its_file(tmp_path):
    secret = tmp_path / "redis.password"
    secret.write_text("s3cret\n")
    config = parse_config(f'[redis]\npassword_file = "{secret}"\n'.encode())
    assert config.redis_password == "s3cret"


def key_of(raw: bytes, name: str = "glue.toml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, name)
    assert str(info.value).startswith(f"{info.value.key}: ")
    return info.value.key


def test_unknown_section_is_named():
    assert key_of(b"[reddis]\nurl = 'redis://x'\n") == "reddis"


def test_unknown_key_in_a_section_is_named():
    assert key_of(b"[queue]\nvisibility = 3\n") == "queue.visibility"


def test_unknown_pipeline_key_is_named():
    assert key_of(b"[pipelines.x]\npreset = 'json-anon-file'\nconcurency = 3\n") == "pipelines.x.concurency"


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        (b"[pipelines.x]\nstages=['json']\nconcurrency='many'\n", "pipelines.x.concurrency", "integer >= 1"),
        (b"[pipelines.x]\nstages=['json']\nconcurrency=0\n", "pipelines.x.concurrency", "integer >= 1"),
        (b"[pipelines.x]\nstages=['json']\nconcurrency=true\n", "pipelines.x.concurrency", "got True"),
        (b"[pipelines.x]\nstages='json'\n", "pipelines.x.stages", "expected list"),
        (b"[pipelines.x]\nstages=['json', 3]\n", "pipelines.x.stages[1]", "stage name"),
        (b"[pipelines.x]\nstages=['json']\nfeed=''\n", "pipelines.x.feed", "feed name"),
        (b"[pipelines.x]\nstages=['json']\njson=3\n", "pipelines.x.json", "expected a table"),
        (b"[pipelines.x]\nfeed='x'\n", "pipelines.x", "needs `preset`"),
        (b"[pipelines.x]\npreset='json-anon-file'\nstages=['json']\n", "pipelines.x.stages", "not both"),
        (b"[queue]\nvisibility_timeout=0\n", "queue.visibility_timeout", "seconds > 0"),
        (b"[queue]\nmax_failures=1.5\n", "queue.max_failures", "integer"),
        (b"[queue]\nclaim_linger=-0.001\n", "queue.claim_linger", "seconds from 0 to 0.05"),
        (b"[queue]\nclaim_linger=3\n", "queue.claim_linger", "seconds from 0 to 0.05"),
        (b"[redis]\nurl='http://x'\n", "redis.url", "redis://"),
        (b"[redis]\ntimeout=1\n", "redis.timeout", "seconds >= 2"),
        (b"[push]\nnodes=['10.0.0.1']\n", "push.nodes[0]", r"an http\(s\)://"),
        (b"[push]\nnodes='http://x'\n", "push.nodes", "expected list"),
        (b"[push]\nmessage_ttl=0\n", "push.message_ttl", "seconds > 0"),
        (b"[push]\nbacklog_limit=0\n", "push.backlog_limit", "integer >= 1"),
        (b"[metrics]\nlisten='localhost'\n", "metrics.listen", "host:port"),
        (b"pipelines = 3\n", "pipelines", "expected a table"),
    ],
)
def test_wrong_values_are_named(raw, key, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        parse_config(raw, "glue.toml")
    assert info.value.key == key


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'json-fast'; known: json-anon-http") as info:
        parse_config(b"[pipelines.x]\npreset = 'json-fast'\n")
    assert info.value.key == "pipelines.x.preset"


def test_http_pipeline_without_push_nodes_names_push_nodes():
    with pytest.raises(ConfigError, match="publishes over http but no push node") as info:
        parse_config(b"[pipelines.x]\npreset = 'json-anon-http'\n")
    assert info.value.key == "push.nodes"


def test_a_pipeline_may_list_its_own_nodes():
    config = parse_config(b"[pipelines.x]\npreset = 'json-anon-http'\nhttp = {nodes = ['http://n:1']}\n")
    assert config.pipeline("x").stage_options["http"]["nodes"] == ["http://n:1"]


def test_unknown_pipeline_is_named():
    config = parse_config(b"[pipelines.a]\nstages=['json']\n", "/etc/glue.toml")
    with pytest.raises(ConfigError, match=r"no such pipeline in /etc/glue.toml \(declared: a\)") as info:
        config.pipeline("b")
    assert info.value.key == "pipelines.b"


@pytest.mark.parametrize(
    ("raw", "name", "problem"),
    [
        (b"[redis\n", "glue.toml", "not valid TOML"),
        (b"\xff\xfe", "glue.toml", "not valid TOML"),
        (b"redis: [url\n", "glue.yaml", "not valid YAML"),
    ],
)
def test_unparsable_files_are_config_errors(raw, name, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_config(raw, name)


def test_yaml_key_errors_are_named_too():
    assert key_of(b"pipelines:\n  x:\n    stages: [json]\n    concurrency: many\n", "glue.yaml") == (
        "pipelines.x.concurrency"
    )


def test_yaml_whose_top_level_is_not_a_table_is_a_config_error():
    for raw in (b"42\n", b"- redis\n", b"just text\n"):
        with pytest.raises(ConfigError, match="must hold a table of sections"):
            parse_config(raw, "glue.yaml")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "absent.toml"))


def test_config_path_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.toml"
    path.write_bytes(b"[queue]\nmax_failures = 9\n")
    monkeypatch.setenv("REALTIME_GLUE_CONFIG", str(path))
    assert load_config().max_failures == 9


def test_each_pipeline_on_a_host_gets_its_own_metrics_port():
    config = parse_config(
        b"""
[push]
nodes = ["http://127.0.0.1:8080"]
[metrics]
listen = "127.0.0.1:9310"
[pipelines.comments]
preset = "json-anon-http"
[pipelines.archive]
preset = "json-anon-file"
file = { path = "/tmp/a.jsonl" }
[pipelines.private]
preset = "json-anon-http"
metrics_listen = "0.0.0.0:9400"
"""
    )
    ports = {name: pc.metrics_listen for name, pc in config.pipelines.items()}
    assert ports == {"archive": "127.0.0.1:9310", "comments": "127.0.0.1:9311", "private": "0.0.0.0:9400"}


def test_metrics_off_means_off_for_every_pipeline():
    config = parse_config(
        b'[metrics]\nlisten = ""\n[pipelines.a]\npreset = "json-anon-file"\nfile = { path = "/x" }\n'
    )
    assert config.pipelines["a"].metrics_listen == ""
    assert "pipelines.a.metrics_listen" in key_of(
        b'[pipelines.a]\npreset = "json-anon-file"\nmetrics_listen = "nope"\nfile = { path = "/x" }\n'
    )


def test_a_pipeline_that_empties_its_own_node_list_is_named():
    raw = (
        b'[push]\nnodes = ["http://127.0.0.1:80"]\n'
        b'[pipelines.x]\npreset = "json-anon-http"\nhttp = { nodes = [] }\n'
    )
    assert key_of(raw) == "pipelines.x.http.nodes"
