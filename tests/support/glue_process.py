"""The real `realtime-glue` command as a subprocess, with a config written for the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

GLUE_SOURCE = Path(__file__).resolve().parents[2] / "glue"
# The interpreter and python3-* libraries the .deb runs on (redis-py 4.3 on Debian 12).
DEBIAN_PYTHON = "/usr/bin/python3"


def write_config(
    directory: Path,
    redis_url: str,
    nodes: list[str],
    pipelines: str,
    extra: str = "",
    push_extra: str = "",
    redis_table: str = "",
    queue_extra: str = "",
) -> Path:
    """A glue.toml; `pipelines` is the TOML of the [pipelines.*] tables, `push_extra`
    and `queue_extra` more keys of [push] (e.g. `ca_file = "..."`) and [queue]
    (e.g. `claim_linger = 0`); `redis_table`, when given, is the [redis] table's
    content in place of `url = redis_url`."""
    path = directory / "glue.toml"
    node_list = ", ".join(f'"{n}"' for n in nodes)
    redis_table = redis_table or f'url = "{redis_url}"'
    path.write_text(
        f"""
[redis]
{redis_table}

[queue]
visibility_timeout = 3
max_failures = 5
claim_batch = 64
shutdown_grace = 5
{queue_extra}
[push]
nodes = [{node_list}]
timeout = 2.0
{push_extra}
[metrics]
listen = ""
{extra}
{pipelines}
"""
    )
    return path


class GlueProcess:
    """`python -m realtime_glue.cli run PIPELINE` with a NOTIFY_SOCKET we read READY from.

    `env` adds to its environment (e.g. WATCHDOG_USEC); `fault` is Python run in the
    glue process before the command (after the CLI's gevent monkey-patching), to
    inject a fault the glue cannot otherwise be made to have, e.g. a part that dies.
    `run_args` replaces `run PIPELINE` (e.g. ("readers",) for the readers unit's command).
    """

    def __init__(
        self,
        config: Path,
        pipeline: str,
        python: str = sys.executable,
        env: dict | None = None,
        fault: str | None = None,
        run_args: tuple[str, ...] | None = None,
    ):
        self.config = config
        self.pipeline = pipeline
        self.run_args = run_args or ("run", pipeline)
        self.python = python
        self.env = env or {}
        self.fault = fault
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"glue-{pipeline}-", suffix=".log")[1])

    def command(self, *args: str) -> list[str]:
        options = ["--config", str(self.config), *args]
        if self.fault:
            program = (
                f"import sys\nimport realtime_glue.cli\n{self.fault}\nsys.exit(realtime_glue.cli.main())"
            )
            return [self.python, "-c", program, *options]
        return [self.python, "-m", "realtime_glue.cli", *options]

    def start(self, wait_ready: bool = True, timeout: float = 20) -> GlueProcess:
        import socket

        notify_path = Path(tempfile.mkdtemp(prefix="glue-notify-")) / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify_path))
        self.notify.settimeout(timeout)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONUNBUFFERED": "1", **self.env}
        if self.python == DEBIAN_PYTHON:
            env["PYTHONPATH"] = str(GLUE_SOURCE)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(*self.run_args), stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        if wait_ready:
            self.wait_for("READY=1", timeout)
        return self

    def wait_for(self, field: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.notify.settimeout(left)
            try:
                datagram = self.notify.recv(4096).decode()
            except TimeoutError:
                break
            if field in datagram.split("\n"):
                return datagram
        raise TimeoutError(f"glue never sent {field}; log:\n{self.log_tail()}")

    def datagrams(self, seconds: float) -> list[str]:
        """Every sd_notify message the glue sends within `seconds`."""
        received = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.notify.settimeout(left)
            try:
                received.append(self.notify.recv(4096).decode())
            except TimeoutError:
                break
        return received

    def log(self) -> str:
        """Everything the glue wrote: a line looked for may be far from the end on a slow run."""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the log, for a failure message."""
        return self.log()[-chars:]

    def wait(self, timeout: float = 30) -> int:
        """The exit status once the glue exits on its own."""
        code = self.process.wait(timeout)
        self.process = None
        return code

    def terminate(self, timeout: float = 30) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(GLUE_SOURCE)} if self.python == DEBIAN_PYTHON else None
        return subprocess.run(
            self.command(*args), input=input, capture_output=True, text=True, timeout=60, env=env
        )


def wait_until(predicate, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def feed_counts(client: redis.Redis, feed: str) -> dict:
    return {
        "ready": client.llen(f"feed.ids:{feed}"),
        "claimed": client.zcard(f"feed.claimed:{feed}"),
        "stalled": client.scard(f"feed.stalled:{feed}"),
        "items": client.hlen(f"feed.items:{feed}"),
        "finishes": int(client.get(f"feed.finishes:{feed}") or 0),
    }
