"""`make bench`: enqueue -> EventSource latency while Redis fails over.

On loopback, no docker: three redis-servers (a primary and two replicas, AOF,
min-replicas-to-write 1) and three redis-sentinels watching them, as the redis
role sets them up (`redis_sentinel_down_after` 5000 ms, the role's default),
one nginx push node (push-stream) and the real `realtime-glue run` following
the primary through the sentinels. A producer puts RATE jobs a second with
durable puts (acknowledged once a replica has them); a put that fails is
retried, with the same job id, until one is acknowledged. After STEADY
seconds the primary's redis-server is killed (SIGKILL, kept down); the run
goes on for WINDOW seconds, then the old primary starts again and rejoins as a
replica.

Latency = EventSource arrival - the job's first put attempt, so a put held up
by the failover counts whole. Printed per window: steady (before the kill),
failover (the WINDOW seconds from the kill), after (once the old primary is
back); the failover p99 as a ratio to the steady p99; the time from the kill
until the first job put after it arrives; lost and duplicated jobs. A
measurement, not a test: only errors fail it.

Results: bench/results/failover-<timestamp>.json and bench/results/latest-failover.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

import redis  # noqa: E402

from realtime_glue.config import parse_config  # noqa: E402
from realtime_glue.errors import PutNotReplicated  # noqa: E402
from realtime_glue.jobqueue import JobFeed  # noqa: E402
from realtime_glue.redis_connection import connect_redis  # noqa: E402
from support.glue_process import GlueProcess, write_config  # noqa: E402
from support.push_node import PushNode  # noqa: E402
from support.sentinel import SentinelDeployment  # noqa: E402

RATE = int(os.environ.get("BENCH_FAILOVER_RATE", 500))
STEADY = 10
WINDOW = 20
AFTER = 10
DOWN_AFTER_MS = 5000  # the redis role's redis_sentinel_down_after
CHANNEL = "failover"
GLUE_PYTHON = os.environ.get("BENCH_GLUE_PYTHON", sys.executable)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summary(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {"messages": 0}
    return {
        "messages": len(latencies_ms),
        "p50_ms": round(statistics.median(latencies_ms), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
    }


def payload(n: int, sent: float) -> str:
    data = {"text": f"comment number {n}", "n": n, "sent": sent, "email": "someone@example.org"}
    return json.dumps({"channel": CHANNEL, "event": "comment", "data": data}, separators=(",", ":"))


class Bench:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="glue-failover-bench-"))
        self.redis = SentinelDeployment(down_after_ms=DOWN_AFTER_MS).start()
        self.node = PushNode(overrides={"push_stream_access_log": "off"}).start()
        self.config_path = write_config(
            self.workdir,
            "",
            [self.node.cluster_url],
            '[pipelines.failover]\nstages = ["json", "anonymize", "format", "http"]\n',
            redis_table=self.redis.redis_table(self.workdir),
        )
        self.config = parse_config(self.config_path.read_bytes(), str(self.config_path))
        self.glue = GlueProcess(self.config_path, "failover", python=GLUE_PYTHON)
        self.subscriber: subprocess.Popen | None = None

    def close(self) -> None:
        if self.glue.alive():
            self.glue.kill()
        if self.subscriber is not None and self.subscriber.poll() is None:
            self.subscriber.kill()
            self.subscriber.wait(10)
        self.node.cleanup()
        self.redis.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self) -> dict:
        self.glue.start()
        total = RATE * (STEADY + WINDOW + AFTER)
        out = self.workdir / "arrivals.json"
        subscriber = [BENCH / "subscriber.py", self.node.host, self.node.port, CHANNEL, total, 60, out]
        self.subscriber = subprocess.Popen(
            [sys.executable, *map(str, subscriber)],
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.subscriber.stdout.readline().strip() != "connected":
            raise RuntimeError("the EventSource subscriber did not connect")
        self.node.wait_for_subscribers(CHANNEL)

        feed = JobFeed(connect_redis(self.config), self.config.pipeline("failover").feed)
        marks: dict[str, float] = {}
        failed_puts = unsure_puts = 0
        old = None
        started = time.monotonic()
        for n in range(total):
            elapsed = n / RATE
            pause = started + elapsed - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if old is None and elapsed >= STEADY:
                old = self.redis.kill_primary()
                marks["kill"] = time.time()
                print(f"  killed the primary (port {old.port}) at job {n}", flush=True)
            if "rejoin" not in marks and elapsed >= STEADY + WINDOW:
                new = self.redis.primary()
                self.redis.restart(old)
                marks["rejoin"] = time.time()
                print(f"  old primary started again at job {n}", flush=True)
            sent = time.time()
            while True:  # the same job id until a put is acknowledged
                try:
                    feed.put(payload(n, sent), job_id=f"job-{n:07d}", durable=True)
                    break
                except PutNotReplicated:
                    unsure_puts += 1
                    break
                except redis.RedisError:
                    failed_puts += 1
                    time.sleep(0.05)
        put_seconds = time.monotonic() - started
        self.redis.wait_until_replica_of(old, new)
        self.subscriber.wait(120)
        arrivals = json.loads(out.read_text())["arrivals"]
        pid_unchanged = self.glue.alive()
        self.glue.terminate()
        return self.report(arrivals, marks, total, put_seconds, failed_puts, unsure_puts, pid_unchanged)

    def report(self, arrivals, marks, total, put_seconds, failed_puts, unsure_puts, glue_alive) -> dict:
        first_seen: dict[int, list] = {}
        for n, sent, received in arrivals:
            first_seen.setdefault(n, [sent, received])
        duplicates = len(arrivals) - len(first_seen)
        kill, rejoin = marks["kill"], marks["rejoin"]
        windows = {"steady": [], "failover": [], "after": []}
        for sent, received in first_seen.values():
            latency = (received - sent) * 1000
            if sent < kill:
                windows["steady"].append(latency)
            elif sent < kill + WINDOW:
                windows["failover"].append(latency)
            elif sent >= rejoin:
                windows["after"].append(latency)
        flowing = min((received for sent, received in first_seen.values() if sent >= kill), default=None)
        steady, failover = summary(windows["steady"]), summary(windows["failover"])
        return {
            "rate": RATE,
            "jobs": total,
            "sent_per_second": round(total / put_seconds, 1),
            "down_after_ms": DOWN_AFTER_MS,
            "windows": {name: summary(values) for name, values in windows.items()},
            "failover_p99_vs_steady": round(failover["p99_ms"] / steady["p99_ms"], 1),
            "seconds_until_flowing": round(flowing - kill, 2) if flowing else None,
            "lost": total - len(first_seen),
            "duplicates": duplicates,
            "put_attempts_failed": failed_puts,
            "puts_not_replicated": unsure_puts,
            "glue_never_restarted": glue_alive,
            "glue_python": GLUE_PYTHON,
        }


def print_report(results: dict) -> None:
    r = results["failover"]
    load = " ".join(f"{x:.1f}" for x in results["load_average_before"])
    print(
        f"\nRedis failover under load ({results['machine']['cpus']} cpus, loopback, load before {load};"
        f" sentinels' down-after {r['down_after_ms']} ms, {r['rate']} durable puts/s):"
    )
    for name in ("steady", "failover", "after"):
        w = r["windows"][name]
        if w["messages"]:
            print(
                f"  {name:9} {w['messages']:6} msgs  p50 {w['p50_ms']:8.2f} ms  p99 {w['p99_ms']:9.2f} ms"
                f"  max {w['max_ms']:9.2f} ms"
            )
    print(f"  failover-window p99 / steady p99: {r['failover_p99_vs_steady']}x")
    print(f"  from the kill until a job put after it arrived: {r['seconds_until_flowing']} s (target < 15 s)")
    print(
        f"  lost {r['lost']}, duplicates {r['duplicates']}, put attempts failed {r['put_attempts_failed']},"
        f" puts not replicated {r['puts_not_replicated']}, glue never restarted: {r['glue_never_restarted']}"
    )


def save(results: dict) -> Path:
    directory = BENCH / "results"
    directory.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"failover-{stamp}.json"
    path.write_text(text)
    (directory / "latest-failover.json").write_text(text)
    return path


def main() -> int:
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": os.getloadavg(),
    }
    bench = Bench()
    try:
        print(f"failover bench: {RATE} jobs/s, kill after {STEADY}s, old primary back {WINDOW}s later ...")
        results["failover"] = bench.run()
    finally:
        bench.close()
    results["load_average_after"] = os.getloadavg()
    print_report(results)
    print(f"\nsaved {save(results).relative_to(REPO)} and bench/results/latest-failover.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
