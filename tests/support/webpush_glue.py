"""The real glue running a Web Push pipeline, for tests and the bench.

A `realtime-glue run` process with a json -> anonymize -> format -> webpush
pipeline named `alerts` (its stages and webpush options can be changed), a
fresh VAPID key, a token key, and the subscription endpoint on a free
loopback port. It trusts the test push services' CA and allows endpoints on
127.0.0.1.

    glue = WebPushGlue(workdir, redis_server.url, certificates.ca).start()
    glue.register("ada", browser)                 # through the endpoint, with a token
    glue.notify("ada", "a reply to you")          # a job on the feed
    glue.stop()

Plain module, no pytest dependency.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from pathlib import Path

import redis

from realtime_glue.jobqueue import JobFeed
from realtime_glue.webpush.backlog import backlog_feed_name
from realtime_glue.webpush.token import make_token
from realtime_glue.webpush.vapid import VapidKey
from support.glue_process import GlueProcess, feed_counts, wait_until, write_config
from support.ports import free_port

PIPELINE = "alerts"
TOKEN_KEY = bytes(range(32))
STAGES = ("json", "anonymize", "format", "webpush")


def secret(path: Path, data: bytes) -> str:
    """A key file only its owner can read, as the glue demands."""
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return str(path)


def backlog_of(origin: str) -> str:
    """The feed name of the backlog the pipeline keeps for a push service origin."""
    return backlog_feed_name(PIPELINE, origin)


class WebPushGlue:
    def __init__(
        self,
        workdir: Path,
        redis_url: str,
        ca_file: Path,
        stages=STAGES,
        concurrency: int = 256,
        metrics_listen: str = "",
        python: str = sys.executable,
        **options,
    ):
        self.redis = redis.Redis.from_url(redis_url)
        self.vapid = VapidKey.generate()
        self.port = free_port()
        webpush = {
            "vapid_key_file": secret(workdir / "vapid.pem", self.vapid.pem()),
            "vapid_subject": "mailto:ops@example.org",
            "token_key_file": secret(workdir / "token.key", TOKEN_KEY),
            "listen": f"127.0.0.1:{self.port}",
            "endpoint_hosts": ["127.0.0.1"],
            "ca_file": str(ca_file),
            **options,
        }
        table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in webpush.items())
        pipelines = (
            f"[pipelines.{PIPELINE}]\nstages = {json.dumps(list(stages))}\nconcurrency = {concurrency}\n"
            f"metrics_listen = {json.dumps(metrics_listen)}\n"
            f"[pipelines.{PIPELINE}.webpush]\n{table}\n"
        )
        self.config = write_config(workdir, redis_url, [], pipelines)
        self.process = GlueProcess(self.config, PIPELINE, python=python)
        self.feed = JobFeed(self.redis, PIPELINE)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> WebPushGlue:
        self.process.start()
        return self

    def stop(self) -> None:
        code = self.process.terminate()
        if code != 0:
            raise RuntimeError(f"the glue exited {code}:\n{self.process.log()}")

    def token(self, user: str, lifetime: int = 600) -> str:
        return make_token(TOKEN_KEY, user, int(time.time()) + lifetime)

    def request(self, method: str, path: str, body=None, user: str | None = None, token: str | None = None):
        """One request to the subscription endpoint, with a token for `user` (or `token`);
        returns (status, parsed JSON or None)."""
        headers = {"Content-Type": "application/json"}
        if user is not None:
            token = self.token(user)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = body if isinstance(body, bytes | None) else json.dumps(body)
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read()
            return response.status, json.loads(text) if text else None
        finally:
            conn.close()

    def register(self, user: str, browser) -> None:
        status, answer = self.request("POST", "/webpush/subscriptions", browser.subscription(), user=user)
        if status != 201:
            raise RuntimeError(f"registering a browser for {user}: HTTP {status} {answer}")

    def notify(self, user, text: str, channel: str = "article-42", **data) -> str:
        """Puts a job addressed to `user` (an id or a list) on the feed; returns its id."""
        payload = {"channel": channel, "event": "comment", "data": {"user_id": user, "text": text, **data}}
        return self.feed.put(json.dumps(payload))

    def finished(self) -> int:
        return feed_counts(self.redis, PIPELINE)["finishes"]

    def wait_finished(self, count: int, timeout: float = 30) -> None:
        wait_until(lambda: self.finished() >= count, timeout, what=f"{count} finished jobs")

    def cli(self, *args):
        return self.process.cli(*args)
