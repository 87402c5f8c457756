"""The job feed's Lua scripts (lua/*.lua): read once per process, registered once per client.

Each script names its keys in its first lines (`local claimed = KEYS[3]`), and
callers pass keys by those names, so the order lives in one place: the script.
"""

from __future__ import annotations

import functools
import re
import weakref
from dataclasses import dataclass
from importlib import resources

_KEY = re.compile(r"^local (\w+) = KEYS\[(\d+)\]", re.MULTILINE)


@dataclass(frozen=True)
class LuaSource:
    name: str
    text: str
    # The script's KEYS, in order, by the names the script gives them.
    key_names: tuple[str, ...]


@functools.cache
def lua_source(name: str) -> LuaSource:
    text = resources.files("realtime_glue").joinpath(f"lua/{name}.lua").read_text()
    declared = [(int(index), key) for key, index in _KEY.findall(text)]
    if [index for index, _ in declared] != list(range(1, len(declared) + 1)):
        raise ValueError(f"lua/{name}.lua must bind KEYS[1..n] to names, in order")
    return LuaSource(name, text, tuple(key for _, key in declared))


# Registered scripts per Redis client: their SHA is loaded into Redis on first use.
_registered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lua_script(redis, name: str):
    """The redis-py Script for `name` on this client, created once."""
    scripts = _registered.setdefault(redis, {})
    if name not in scripts:
        scripts[name] = redis.register_script(lua_source(name).text)
    return scripts[name]


def run_script(redis, name: str, keys: dict[str, str], args: list, client=None, preloaded: bool = False):
    """Run script `name` with its keys given by name (client: a pipeline to queue it on).

    A script queued on a pipeline makes redis-py ask Redis whether it is loaded
    (SCRIPT EXISTS) before the pipeline runs: one more round trip. With
    `preloaded`, it is queued as a bare EVALSHA instead, and the caller handles
    NoScriptError (Redis restarted and lost its scripts) by running it again
    without a pipeline, which loads it.
    """
    source = lua_source(name)
    missing = [key for key in source.key_names if key not in keys]
    if missing:
        raise KeyError(f"lua/{name}.lua needs the keys {', '.join(missing)}")
    ordered = [keys[key] for key in source.key_names]
    script = lua_script(redis, name)
    if preloaded and client is not None:
        return client.evalsha(script.sha, len(ordered), *ordered, *args)
    return script(keys=ordered, args=args, client=client)
