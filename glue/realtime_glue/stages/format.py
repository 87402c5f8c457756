"""format: build the text a browser receives for the message.

The body is one JSON object: {"id", "channel", "event", "data"}. The id is
the job id, and it is also sent to every push node as the Event-ID, so a
browser that fails over to another node resumes with Last-Event-ID.
"""

from __future__ import annotations

import json

from ..channels import event_id_problem
from ..errors import Reject
from ..message import Message
from ..stage import Stage


class Format(Stage):
    name = "format"

    def configure(self) -> None:
        self.include_channel = self.option("include_channel", bool, True)

    def process(self, message: Message) -> Message:
        message.event_id = message.event_id or message.job_id
        problem = event_id_problem(message.event_id)
        if problem:
            raise Reject(f"format: job id {message.event_id!r} cannot be an event id: {problem}")
        body = {"id": message.event_id}
        if self.include_channel:
            body["channel"] = message.channel
        body["event"] = message.event
        body["data"] = message.data
        message.body = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return message
