"""A real redis-server on a free loopback port, in its own directory, for tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from support.ports import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisProcess:
    """A redis-server process (a server, or a sentinel: support/sentinel.py) on a free loopback
    port, in a directory of its own, with its log there."""

    log_name = "redis.log"

    def __init__(self, prefix: str, password: str | None):
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen | None = None

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def _launch(self, args: list[str], timeout: float) -> None:
        """Start it and wait until it answers PING."""
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client(socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"{Path(args[0]).name} did not answer on port {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.dir / self.log_name
        return path.read_text()[-3000:] if path.exists() else ""

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(RedisProcess):
    def __init__(self, appendonly: bool = False, password: str | None = None, extra_args: list[str] = ()):
        super().__init__("glue-redis-", password)
        self.appendonly = appendonly
        # More redis-server options, e.g. ["--replicaof", "127.0.0.1", "6379"].
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", str(self.dir / self.log_name),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self._launch(args + self.extra_args, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
