"""file: append each message as a JSON line, for shadow runs and archives.

fsync policy: "always" (each message is on disk before its job finishes),
"interval" (a sync at most every `fsync_interval` seconds while messages
arrive, and on close), "never" (left to the kernel).
"""

from __future__ import annotations

import json
import os
import time

from ..errors import TransientFailure
from ..message import Message
from ..stage import Stage

FSYNC_POLICIES = ("always", "interval", "never")


class FilePublish(Stage):
    name = "file"

    def configure(self) -> None:
        self.path = self.option("path", str)
        self.fsync = self.option(
            "fsync", str, "interval", lambda v: v in FSYNC_POLICIES, f"one of {', '.join(FSYNC_POLICIES)}"
        )
        self.fsync_interval = self.option("fsync_interval", float, 1.0, lambda v: v > 0, "must be positive")
        self._handle = None
        self._last_sync = time.monotonic()

    def _file(self):
        if self._handle is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._handle = open(self.path, "ab")
        return self._handle

    def process(self, message: Message) -> Message:
        record = {
            "id": message.event_id or message.job_id,
            "channel": message.channel,
            "body": (message.body or b"").decode(),
        }
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        try:
            handle = self._file()
            handle.write(line)
            handle.flush()
            now = time.monotonic()
            if self.fsync == "always" or (
                self.fsync == "interval" and now - self._last_sync >= self.fsync_interval
            ):
                os.fsync(handle.fileno())
                self._last_sync = now
        except OSError as exc:
            raise TransientFailure(f"file: cannot write {self.path}: {exc.strerror}") from None
        return message

    def close(self) -> None:
        if self._handle is not None:
            if self.fsync != "never":
                os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
