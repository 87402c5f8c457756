"""anonymize: drop personal fields, or replace them with a keyed hash.

Fields are dotted paths into the message data ("author.email"). A hashed
field keeps its use as a join key (the same input gives the same output)
without revealing the value to anyone who lacks the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from ..errors import ConfigError
from ..keyfile import read_private_key
from ..message import Message
from ..stage import Stage

DEFAULT_DROP = ["email", "ip", "ip_address", "user_agent"]


class Anonymize(Stage):
    name = "anonymize"

    def configure(self) -> None:
        self.drop = [p.split(".") for p in self.string_list("drop", DEFAULT_DROP)]
        self.hash = [p.split(".") for p in self.string_list("hash", [])]
        key_file = self.option("hash_key_file", str, "")
        if self.hash and not key_file:
            raise ConfigError("hash_key_file", "required when `hash` names fields")
        self.key = read_private_key(key_file, "hash_key_file") if key_file else b""

    def process(self, message: Message) -> Message:
        data = message.data
        if isinstance(data, dict):
            for path in self.drop:
                _drop(data, path)
            for path in self.hash:
                _replace(data, path, self._hash)
        return message

    def _hash(self, value) -> str:
        raw = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        digest = hmac.new(self.key, raw.encode(), hashlib.sha256).hexdigest()
        return "anon:" + digest[:32]


def _parent(data: dict, path: list[str]):
    for part in path[:-1]:
        data = data.get(part)
        if not isinstance(data, dict):
            return None
    return data


def _drop(data: dict, path: list[str]) -> None:
    parent = _parent(data, path)
    if parent is not None:
        parent.pop(path[-1], None)


def _replace(data: dict, path: list[str], transform) -> None:
    parent = _parent(data, path)
    if parent is not None and path[-1] in parent:
        parent[path[-1]] = transform(parent[path[-1]])
