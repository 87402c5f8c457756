"""`make bench`: encrypted Web Push messages per second from one glue process, beside the plain http stage.

All on loopback in one run, with a real redis-server and the real
`realtime-glue run` process:

1. json -> anonymize -> format -> http: the plain stage, to a push node
   (push-stream when PUSH_STREAM_SRC is set, else Debian's nchan);
2. json -> anonymize -> format -> webpush: each job addressed to one of
   1,000 users with one subscription each; per message a fresh ECDH key, the
   RFC 8291 encryption, a VAPID-signed POST (JWT reused per origin) over a
   keep-alive TLS connection to a local push service: nginx with TLS,
   answering 201 as a push service does (it decrypts nothing; the tests'
   push service does, this one must not be the bottleneck);
3. for scale, what one core does without the glue: RFC 8291 encryptions
   per CPU second in the same python.

The glue runs on this venv's python, or with BENCH_GLUE_PYTHON=/usr/bin/python3
on Debian's python3-* packages (what the .deb runs on).

Printed as ratios (webpush / http, and the CPU per message of each) with the
load average, since this machine is shared; saved to
bench/results/webpush-<timestamp>.json and bench/results/latest-webpush.json.
A measurement, not a test: errors fail, figures do not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from realtime_glue.jobqueue import JobFeed  # noqa: E402
from realtime_glue.webpush import ece  # noqa: E402
from realtime_glue.webpush.subscriptions import Subscription, SubscriptionStore  # noqa: E402
from support.glue_process import GlueProcess, wait_until, write_config  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.push_node import NGINX, PushNode  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402
from support.tls import make_certificates  # noqa: E402
from support.webpush_glue import WebPushGlue  # noqa: E402

HTTP_JOBS = int(os.environ.get("BENCH_HTTP_JOBS", 50_000))
WEBPUSH_JOBS = int(os.environ.get("BENCH_WEBPUSH_JOBS", 20_000))
USERS = 1_000
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 256))
ENCRYPT_SECONDS = 2
# The python that runs the glue: this venv's (current PyPI libraries), or with
# BENCH_GLUE_PYTHON=/usr/bin/python3 Debian's python3-* packages, what the .deb runs on.
GLUE_PYTHON = os.environ.get("BENCH_GLUE_PYTHON", sys.executable)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def payload(n: int, user: str | None) -> str:
    data = {"text": f"comment number {n} on the thread", "n": n, "email": "someone@example.org"}
    if user is not None:
        data["user_id"] = user
    return json.dumps(
        {"channel": f"article-{n % 50}", "event": "comment", "data": data}, separators=(",", ":")
    )


def preload(feed: JobFeed, count: int, user_of) -> None:
    for start in range(0, count, 1000):
        feed.put_many([payload(n, user_of(n)) for n in range(start, min(count, start + 1000))])


class TlsPushService:
    """nginx with TLS on a loopback port answering 201 to POST /push/<anything>: a fast push service."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.certificates = make_certificates(directory / "tls")
        user = "user root;\n" if os.geteuid() == 0 else ""
        (directory / "tmp").mkdir(exist_ok=True)
        self.config = directory / "nginx.conf"
        self.config.write_text(
            f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {directory}/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {self.certificates.cert};
        ssl_certificate_key {self.certificates.key};
        location /push/ {{ return 201; }}
    }}
}}
"""
        )
        self.process: subprocess.Popen | None = None

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TlsPushService:
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.directory), "-c", str(self.config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx (push service) exited: {self.process.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx (push service) did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


def metric(port: int, name: str, labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{re.escape(name)}\{{{labels}\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


class Bench:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="webpush-bench-"))
        self.redis = RedisServer().start()
        self.client = self.redis.client()
        self.node = PushNode(
            overrides={"push_stream_access_log": "off", "push_stream_shared_memory_size": "512m"}
        ).start()
        self.push_service = TlsPushService(self.workdir / "push-service").start()
        self.glues: list[GlueProcess] = []

    def close(self) -> None:
        for glue in self.glues:
            if glue.alive():
                glue.kill()
        self.push_service.stop()
        self.node.cleanup()
        self.redis.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _measure(self, glue: GlueProcess, feed: str, jobs: int) -> dict:
        glue.start()
        pid = glue.process.pid
        started, cpu = time.monotonic(), cpu_seconds(pid)
        wait_until(
            lambda: int(self.client.get(f"feed.finishes:{feed}") or 0) >= jobs,
            timeout=600,
            interval=0.02,
            what=f"{jobs} finished jobs on {feed}",
        )
        elapsed, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu
        stalled = self.client.scard(f"feed.stalled:{feed}")
        if stalled:
            raise RuntimeError(f"{stalled} jobs stalled on {feed}:\n{glue.log()}")
        return {
            "jobs": jobs,
            "seconds": round(elapsed, 3),
            "per_second": round(jobs / elapsed, 1),
            "glue_cpu_percent": round(100 * cpu / elapsed, 1),
            "glue_cpu_us_per_job": round(1e6 * cpu / jobs, 1),
        }

    def http(self) -> dict:
        directory = self.workdir / "http"
        directory.mkdir()
        pipelines = (
            '[pipelines.plain]\nstages = ["json", "anonymize", "format", "http"]\n'
            f"concurrency = {CONCURRENCY}\n"
        )
        config = write_config(directory, self.redis.url, [self.node.cluster_url], pipelines)
        glue = GlueProcess(config, "plain", python=GLUE_PYTHON)
        self.glues.append(glue)
        preload(JobFeed(self.client, "plain"), HTTP_JOBS, lambda n: None)
        result = self._measure(glue, "plain", HTTP_JOBS)
        glue.terminate()
        return result

    def webpush(self) -> dict:
        directory = self.workdir / "webpush"
        directory.mkdir()
        metrics_port = free_port()
        wp = WebPushGlue(
            directory,
            self.redis.url,
            self.push_service.certificates.ca,
            concurrency=CONCURRENCY,
            metrics_listen=f"127.0.0.1:{metrics_port}",
            python=GLUE_PYTHON,
            rate_limit=0,  # every message counts here
            listen="",  # no subscription endpoint: the subscriptions are written below
            token_key_file="",
        )
        self.glues.append(wp.process)
        store = SubscriptionStore(self.client)
        keys = [ece.public_bytes(ec.generate_private_key(ec.SECP256R1())) for _ in range(16)]
        for u in range(USERS):
            store.add(
                f"user{u}",
                Subscription(
                    f"{self.push_service.origin}/push/user{u}", keys[u % 16], os.urandom(16), created_ms=1
                ),
            )
        preload(wp.feed, WEBPUSH_JOBS, lambda n: f"user{n % USERS}")
        result = self._measure(wp.process, "alerts", WEBPUSH_JOBS)
        sent = metric(metrics_port, "glue_webpush_deliveries_total", 'outcome="sent",pipeline="alerts"')
        wp.stop()
        if sent < WEBPUSH_JOBS:
            raise RuntimeError(f"only {sent:.0f} of {WEBPUSH_JOBS} push messages were answered 201")
        result.update({"users": USERS, "subscriptions_per_user": 1, "push_messages_sent": int(sent)})
        return result


ENCRYPT_LOOP = """
import json, os, sys, time
from cryptography.hazmat.primitives.asymmetric import ec
from realtime_glue.webpush import ece
browser, auth, body = ece.public_bytes(ec.generate_private_key(ec.SECP256R1())), os.urandom(16), b"x" * 220
count, started, cpu = 0, time.monotonic(), time.process_time()
while time.monotonic() - started < float(sys.argv[1]):
    for _ in range(100):
        ece.encrypt(body, browser, auth)
    count += 100
cpu = time.process_time() - cpu
print(json.dumps({"per_cpu_second": round(count / cpu, 1), "us_each": round(1e6 * cpu / count, 1)}))
"""

GLUE_LIBRARIES = """
import json, platform, sys, cryptography, gevent, urllib3
print(json.dumps({"python": sys.executable, "version": platform.python_version(),
                  "cryptography": cryptography.__version__, "gevent": gevent.__version__,
                  "urllib3": urllib3.__version__}))
"""


def glue_python() -> dict:
    """What runs the glue: the python, and the versions of the libraries the webpush stage uses."""
    done = subprocess.run([GLUE_PYTHON, "-c", GLUE_LIBRARIES], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def encryptions_per_second() -> dict:
    """RFC 8291 encryptions per CPU second in the glue's python, without the glue."""
    done = subprocess.run(
        [GLUE_PYTHON, "-c", ENCRYPT_LOOP, str(ENCRYPT_SECONDS)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def save(results: dict) -> Path:
    directory = BENCH / "results"
    directory.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    path = directory / f"webpush-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    (directory / "latest-webpush.json").write_text(text)
    return path


def print_report(results: dict) -> None:
    http, webpush, enc = results["http"], results["webpush"], results["encrypt_one_core"]
    load = " ".join(f"{x:.1f}" for x in results["load_average_before"])
    cpus = results["machine"]["cpus"]
    print(f"\n{cpus} cpus, loopback, load average before {load} (others' work skews the figures)")
    rows = [
        (
            "glue json -> anonymize -> format -> http",
            f"{http['per_second']:,.0f} msg/s  (glue CPU {http['glue_cpu_us_per_job']} us/msg)",
        ),
        (
            "glue json -> anonymize -> format -> webpush",
            f"{webpush['per_second']:,.0f} msg/s  (glue CPU {webpush['glue_cpu_us_per_job']} us/msg)",
        ),
        (
            "RFC 8291 encryption alone, one core",
            f"{enc['per_cpu_second']:,.0f} /s  ({enc['us_each']} us each)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    r = results["ratios"]
    print(
        f"\n  webpush / http throughput: {r['webpush_vs_http']:.3f}"
        f"   CPU per message webpush / http: {r['cpu_per_message_webpush_vs_http']:.1f}x"
        f"   encryption's share of webpush CPU: {r['encryption_share_of_webpush_cpu']:.2f}"
    )


def main() -> int:
    if GLUE_PYTHON != sys.executable:
        os.environ["PYTHONPATH"] = str(REPO / "glue")  # the glue's source, for Debian's python3
    bench = Bench()
    print(f"push node flavour: {bench.node.flavour}; push service {bench.push_service.origin} (nginx, TLS)")
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "flavour": bench.node.flavour,
        "machine": {"cpus": os.cpu_count()},
        "glue_python": glue_python(),
        "load_average_before": os.getloadavg(),
    }
    try:
        print(f"glue runs on {results['glue_python']}", flush=True)
        print("(3) RFC 8291 encryptions, one core ...", flush=True)
        results["encrypt_one_core"] = encryptions_per_second()
        print(f"(1) glue, http stage, {HTTP_JOBS:,} pre-loaded jobs ...", flush=True)
        results["http"] = bench.http()
        print(
            f"(2) glue, webpush stage, {WEBPUSH_JOBS:,} pre-loaded jobs for {USERS:,} users ...", flush=True
        )
        results["webpush"] = bench.webpush()
    finally:
        bench.close()
    results["load_average_after"] = os.getloadavg()
    http, webpush = results["http"], results["webpush"]
    results["ratios"] = {
        "webpush_vs_http": round(webpush["per_second"] / http["per_second"], 4),
        "cpu_per_message_webpush_vs_http": round(
            webpush["glue_cpu_us_per_job"] / http["glue_cpu_us_per_job"], 2
        ),
        "encryption_share_of_webpush_cpu": round(
            results["encrypt_one_core"]["us_each"] / webpush["glue_cpu_us_per_job"], 3
        ),
    }
    print_report(results)
    print(f"\nsaved {save(results).relative_to(REPO)} and bench/results/latest-webpush.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
