"""The job feed's Lua scripts: keys bound to names, read and registered once."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import redis

from realtime_glue.jobqueue import FeedKeys, JobFeed
from realtime_glue.lua_scripts import lua_script, lua_source

SCRIPTS = sorted(
    path.name.removesuffix(".lua")
    for path in resources.files("realtime_glue").joinpath("lua").iterdir()
    if path.name.endswith(".lua")
)


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_uses_its_keys_only_by_name(name):
    source = lua_source(name)
    assert source.key_names, f"{name}.lua binds no KEYS"
    uses = [line for line in source.text.splitlines() if "KEYS[" in line]
    assert all(re.fullmatch(r"local \w+ = KEYS\[\d+\]", line) for line in uses), uses


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_key_a_script_names_is_a_key_of_the_feed(name):
    known = set(FeedKeys("f").named()) | set(FeedKeys("f").named("mirror_"))
    assert set(lua_source(name).key_names) <= known


def test_scripts_are_registered_once_per_client_not_per_feed():
    client = redis.Redis(host="127.0.0.1", port=9)  # never connected: registering needs no server
    first, second = JobFeed(client, "a"), JobFeed(client, "b")
    assert first.redis is second.redis
    assert lua_script(client, "claim") is lua_script(client, "claim")
    other = redis.Redis(host="127.0.0.1", port=9)
    assert lua_script(other, "claim") is not lua_script(client, "claim")
    assert lua_source("claim") is lua_source("claim")  # read from disk once
