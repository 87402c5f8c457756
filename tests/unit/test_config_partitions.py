"""`partitions` in a pipeline's table: how many partitions of its feed it reads."""

from __future__ import annotations

import pytest

from realtime_glue.config import parse_config
from realtime_glue.errors import ConfigError


def test_a_pipeline_reads_one_feed_unless_it_names_partitions():
    config = parse_config(b"[pipelines.comments]\nstages = ['json']\n", "glue.toml")
    assert config.pipelines["comments"].partitions == 1
    assert config.pipelines["comments"].feeds == ["comments"]


def test_partitions_number_the_feed():
    raw = b"[pipelines.comments]\nstages = ['json']\nfeed = 'c'\npartitions = 3\n"
    assert parse_config(raw, "glue.toml").pipelines["comments"].feeds == ["c.0", "c.1", "c.2"]


@pytest.mark.parametrize("value", ["0", "257", "'8'", "2.5", "true"])
def test_a_wrong_number_of_partitions_is_named(value):
    raw = f"[pipelines.comments]\nstages = ['json']\npartitions = {value}\n".encode()
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "glue.toml")
    assert info.value.key == "pipelines.comments.partitions"
