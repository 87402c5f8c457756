"""validate: a check that can stand anywhere in a pipeline.

It stalls the job (with the reason) when the message breaks a rule, so a
pipeline can assert what earlier stages promised: no personal field left,
the data sealed, a body a browser can parse and that fits the push node.
"""

from __future__ import annotations

import json

from ..channels import DEFAULT_WILDCARD_PREFIX, channel_problem
from ..errors import Reject
from ..message import Message
from ..stage import Stage

DEFAULT_MAX_BODY_BYTES = 64 * 1024


class Validate(Stage):
    name = "validate"

    def configure(self) -> None:
        self.forbid_fields = set(self.string_list("forbid_fields", []))
        self.require_fields = self.string_list("require_fields", [])
        self.require_encrypted = self.option("require_encrypted", bool, False)
        self.wildcard_prefix = self.option("wildcard_prefix", str, DEFAULT_WILDCARD_PREFIX)
        self.max_body_bytes = self.option(
            "max_body_bytes", int, DEFAULT_MAX_BODY_BYTES, lambda v: v > 0, "must be positive"
        )

    def process(self, message: Message) -> Message:
        problem = channel_problem(message.channel, self.wildcard_prefix)
        if problem:
            raise Reject(f"validate: {problem}")
        found = _find_fields(message.data, self.forbid_fields)
        if found:
            raise Reject(f"validate: forbidden field(s) present in data: {', '.join(sorted(found))}")
        if self.require_fields:
            data = message.data if isinstance(message.data, dict) else {}
            missing = [f for f in self.require_fields if f not in data]
            if missing:
                raise Reject(f"validate: required field(s) missing from data: {', '.join(missing)}")
        if self.require_encrypted and not message.notes.get("encrypted"):
            raise Reject("validate: data is not encrypted")
        if message.body is not None:
            if len(message.body) > self.max_body_bytes:
                raise Reject(f"validate: body is {len(message.body)} bytes, over {self.max_body_bytes}")
            try:
                json.loads(message.body)
            except ValueError as exc:
                raise Reject(f"validate: body is not JSON: {exc}") from None
        return message


def _find_fields(data, names: set[str]) -> set[str]:
    if not names:
        return set()
    found: set[str] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found |= names & node.keys()
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
