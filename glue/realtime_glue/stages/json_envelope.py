"""json: decode the job's payload and check its envelope {channel, event, data}."""

from __future__ import annotations

import json

from ..channels import DEFAULT_WILDCARD_PREFIX, channel_problem
from ..errors import Reject
from ..message import Message
from ..stage import Stage

DEFAULT_MAX_BYTES = 64 * 1024


class JsonEnvelope(Stage):
    name = "json"

    def configure(self) -> None:
        self.max_bytes = self.option("max_bytes", int, DEFAULT_MAX_BYTES, lambda v: v > 0, "must be positive")
        self.default_event = self.option("default_event", str, "message")
        self.wildcard_prefix = self.option("wildcard_prefix", str, DEFAULT_WILDCARD_PREFIX)

    def process(self, message: Message) -> Message:
        raw = message.raw
        if len(raw) > self.max_bytes:
            raise Reject(f"payload is {len(raw)} bytes, over the {self.max_bytes}-byte limit")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Reject(f"payload is not UTF-8: {exc.reason} at byte {exc.start}") from None
        try:
            envelope = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Reject(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(envelope, dict):
            raise Reject(f"payload must be a JSON object, got {type(envelope).__name__}")
        if "channel" not in envelope:
            raise Reject("payload has no channel")
        problem = channel_problem(envelope["channel"], self.wildcard_prefix)
        if problem:
            raise Reject(problem)
        event = envelope.get("event", self.default_event)
        if not isinstance(event, str) or not event:
            raise Reject(f"event must be a non-empty string, got {event!r}")
        if "data" not in envelope:
            raise Reject("payload has no data")
        message.channel = envelope["channel"]
        message.event = event
        message.data = envelope["data"]
        return message
