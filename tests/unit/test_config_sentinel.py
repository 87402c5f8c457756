"""[redis] with Sentinel and durable puts: what the config accepts, and the key it names."""

from __future__ import annotations

import pytest

from realtime_glue.config import parse_config
from realtime_glue.errors import ConfigError


def test_sentinels_service_and_password_files(tmp_path):
    secret = tmp_path / "sentinel.password"
    secret.write_text("s3cret\n")
    config = parse_config(
        f"""
[redis]
sentinels = ["10.0.1.10:26379", "queue2.example:26380", "[fd00::3]:26379"]
service = "realtime-glue"
sentinel_password_file = "{secret}"
db = 2
""".encode()
    )
    sentinel = config.redis_sentinel
    assert sentinel.sentinels == [("10.0.1.10", 26379), ("queue2.example", 26380), ("fd00::3", 26379)]
    assert (sentinel.service, sentinel.password, sentinel.db) == ("realtime-glue", "s3cret", 2)


def test_without_sentinels_there_is_no_sentinel_config_and_durable_puts_have_defaults():
    config = parse_config(b"")
    assert config.redis_sentinel is None
    assert (config.durable_replicas, config.durable_timeout) == (1, 2.0)


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ('sentinels = ["a:1"]\nservice = "s"\nurl = "redis://x:6379/0"', "redis.url", "not both"),
        ('sentinels = ["a:1"]', "redis.service", "service name is needed"),
        ("sentinels = []\nservice = 's'", "redis.sentinels", "at least one"),
        ('sentinels = ["a"]\nservice = "s"', "redis.sentinels[0]", "host:port"),
        ('sentinels = ["a:1", "b:99999"]\nservice = "s"', "redis.sentinels[1]", "host:port"),
        ('sentinels = ["a:1", 7]\nservice = "s"', "redis.sentinels[1]", "host:port"),
        ('sentinels = ["a:1"]\nservice = ""', "redis.service", "a service name"),
        ('sentinels = ["a:1"]\nservice = "s"\ndb = -1', "redis.db", ">= 0"),
        ('service = "s"', "redis.service", "only used with [redis] sentinels"),
        (
            'sentinels = ["a:1"]\nservice = "s"\nsentinel_password_file = "/nonexistent"',
            "redis.sentinel_password_file",
            "cannot read",
        ),
        ("durable_replicas = 0", "redis.durable_replicas", ">= 1"),
        ("durable_timeout = 5", "redis.durable_timeout", "below [redis] timeout (5)"),
        ("durable_timeout = 0", "redis.durable_timeout", "seconds > 0"),
    ],
)
def test_wrong_values_name_their_key(raw, key, problem):
    with pytest.raises(ConfigError) as error:
        parse_config(f"[redis]\n{raw}\n".encode())
    assert error.value.key == key
    assert problem in error.value.problem
