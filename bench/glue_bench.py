"""`make bench`: how fast and how lean one glue process is, against baselines of the same run.

All on loopback, with a real redis-server, a real nginx push node (the
default flavour, push-stream, from its Debian package) and the real
`realtime-glue run` process:

1. throughput of json -> anonymize -> format -> http -> finish over a
   pre-loaded feed, as a ratio to wrk's raw POST rate on the same /pub
   endpoint (target >= 0.25) and to a seed-style blocking loop (target >= 5x);
2. latency enqueue -> EventSource subscriber at a steady 2,000 msg/s after
   a one-second warm-up (target p99 <= 10 ms), next to the push node's own
   latency (the producer POSTing straight to /pub);
3. the glue's RSS with 10,000 jobs in flight (a push node that holds every
   request), against the idle glue's.

A measurement, not a test: a missed target is printed, not failed; errors fail.
Results: bench/results/glue-<timestamp>.json and bench/results/latest-glue.json.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import shutil
import signal
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

from realtime_glue.jobqueue import JobFeed  # noqa: E402
from support.glue_process import GlueProcess, wait_until, write_config  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.push_node import PushNode  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402

STAGES = ["json", "anonymize", "format", "http"]
THROUGHPUT_JOBS = int(os.environ.get("BENCH_JOBS", 50_000))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 256))
WRK_SECONDS = 5
SEED_SECONDS = 5
LATENCY_RATE = 2_000
LATENCY_SECONDS = 10
RAW_LATENCY_SECONDS = 5
WARM_UP_SECONDS = 1
IN_FLIGHT_JOBS = 10_000
TARGETS = {
    "throughput_vs_wrk": 0.25,
    "throughput_vs_seed": 5.0,
    "latency_p99_ms": 10.0,
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- helpers ----------------------------------------------------------------------


def payload(n: int, channel: str, sent: float | None = None) -> str:
    """A job as producers put it: envelope plus personal fields the anonymize stage drops."""
    data = {"text": f"comment number {n}", "n": n, "email": "someone@example.org", "ip": "192.0.2.7"}
    if sent is not None:
        data["sent"] = sent
    return json.dumps({"channel": channel, "event": "comment", "data": data}, separators=(",", ":"))


def preload(feed: JobFeed, count: int, channel: str) -> None:
    for start in range(0, count, 1000):
        feed.put_many([payload(n, channel) for n in range(start, min(count, start + 1000))])


def finishes(client: redis.Redis, feed: str) -> int:
    return int(client.get(f"feed.finishes:{feed}") or 0)


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


class Bench:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="glue-bench-"))
        self.redis = RedisServer().start()
        self.client = self.redis.client()
        # As in production (the role's defaults): no access log, and enough shared
        # memory for the store (the tests' 32m fills up under wrk and refuses publishes).
        self.node = PushNode(
            overrides={"push_stream_access_log": "off", "push_stream_shared_memory_size": "512m"}
        ).start()
        self.glues: list[GlueProcess] = []
        self.helpers: list[subprocess.Popen] = []

    def close(self) -> None:
        for glue in self.glues:
            if glue.alive():
                glue.kill()
        for process in self.helpers:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self.node.cleanup()
        self.redis.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def glue(self, name: str, node_url: str, concurrency: int, http: str = "") -> GlueProcess:
        directory = self.workdir / name
        directory.mkdir()
        stages = ", ".join(f'"{s}"' for s in STAGES)
        pipelines = f"[pipelines.{name}]\nstages = [{stages}]\nconcurrency = {concurrency}\n"
        if http:
            pipelines += f"[pipelines.{name}.http]\n{http}\n"
        config = write_config(directory, self.redis.url, [node_url], pipelines)
        glue = GlueProcess(config, name)
        self.glues.append(glue)
        return glue

    # --- (1) throughput ---------------------------------------------------------------

    def wrk(self) -> dict:
        url = f"{self.node.cluster_url}/pub?id=bench"
        done = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{WRK_SECONDS}s", "-s", str(BENCH / "wrk_post.lua"), url],
            capture_output=True,
            text=True,
            check=True,
            timeout=WRK_SECONDS + 30,
        )
        rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
        if rate is None:
            raise RuntimeError(f"wrk printed no rate:\n{done.stdout}{done.stderr}")
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
        if bad:
            raise RuntimeError(f"wrk: {bad.group(1)} publishes were refused:\n{done.stdout}")
        return {"per_second": float(rate.group(1)), "threads": 1, "connections": 16, "seconds": WRK_SECONDS}

    def seed_loop(self) -> dict:
        jobs = 15_000
        preload(JobFeed(self.client, "seed"), jobs, "bench")
        done = subprocess.run(
            [
                sys.executable,
                str(BENCH / "seed_loop.py"),
                self.redis.url,
                "seed",
                self.node.cluster_url,
                str(jobs),
                str(SEED_SECONDS),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=SEED_SECONDS + 60,
        )
        return json.loads(done.stdout)

    def glue_throughput(self) -> dict:
        preload(JobFeed(self.client, "throughput"), THROUGHPUT_JOBS, "bench")
        glue = self.glue("throughput", self.node.cluster_url, CONCURRENCY)
        glue.start()
        started, first = time.monotonic(), finishes(self.client, "throughput")
        cpu_glue, cpu_redis = cpu_seconds(glue.process.pid), cpu_seconds(self.redis.process.pid)
        wait_until(
            lambda: finishes(self.client, "throughput") >= THROUGHPUT_JOBS,
            timeout=300,
            interval=0.02,
            what=f"{THROUGHPUT_JOBS} finished jobs",
        )
        elapsed = time.monotonic() - started
        cpu_glue = cpu_seconds(glue.process.pid) - cpu_glue
        cpu_redis = cpu_seconds(self.redis.process.pid) - cpu_redis
        stalled = self.client.scard("feed.stalled:throughput")
        glue.terminate()
        if stalled:
            raise RuntimeError(f"{stalled} jobs stalled in the throughput run:\n{glue.log()}")
        measured = THROUGHPUT_JOBS - first
        return {
            "jobs": measured,
            "seconds": round(elapsed, 3),
            "per_second": round(measured / elapsed, 1),
            "concurrency": CONCURRENCY,
            "stages": STAGES,
            "glue_cpu_percent": round(100 * cpu_glue / elapsed, 1),
            "redis_cpu_percent": round(100 * cpu_redis / elapsed, 1),
            "glue_cpu_us_per_job": round(1e6 * cpu_glue / measured, 1),
        }

    # --- (2) latency ------------------------------------------------------------------

    def latency(self, via_glue: bool = True, seconds: int = LATENCY_SECONDS) -> dict:
        """Enqueue -> glue -> push node -> EventSource; with via_glue=False the
        producer POSTs straight to the node (the push node's own share)."""
        total = LATENCY_RATE * seconds
        channel = "latency" if via_glue else "latency-raw"
        glue = None
        if via_glue:
            glue = self.glue("latency", self.node.cluster_url, CONCURRENCY)
            glue.start()
            self._warm_up(glue)
        out = self.workdir / f"{channel}.json"
        node = [self.node.host, str(self.node.port)]
        subscriber = subprocess.Popen(
            [sys.executable, str(BENCH / "subscriber.py"), *node, channel, str(total), "10", str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.helpers.append(subscriber)
        if subscriber.stdout.readline().strip() != "connected":
            raise RuntimeError("the EventSource subscriber did not connect")
        self.node.wait_for_subscribers(channel)
        if via_glue:
            feed = JobFeed(self.client, "latency")
            send = lambda n: feed.put(payload(n, channel, sent=time.time()))  # noqa: E731
        else:
            conn = http.client.HTTPConnection(self.node.host, self.node.cluster_port, timeout=10)
            send = lambda n: self._post(conn, channel, n)  # noqa: E731
        started = time.monotonic()
        cpu = cpu_seconds(glue.process.pid) if glue is not None else 0.0
        for n in range(total):
            pause = started + n / LATENCY_RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            send(n)
        put_seconds = time.monotonic() - started
        subscriber.wait(60)
        if glue is not None:
            cpu = cpu_seconds(glue.process.pid) - cpu
            glue.terminate()
        latencies = json.loads(out.read_text())["latencies_ms"]
        if len(latencies) < total:
            raise RuntimeError(f"the subscriber on {channel} received {len(latencies)} of {total} messages")
        return {
            "messages": total,
            "warm_up_seconds": WARM_UP_SECONDS if via_glue else 0,
            "sent_per_second": round(total / put_seconds, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p90_ms": round(percentile(latencies, 0.90), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "max_ms": round(max(latencies), 2),
            "glue_cpu_percent": round(100 * cpu / put_seconds, 1) if via_glue else None,
            "glue_cpu_us_per_job": round(1e6 * cpu / total, 1) if via_glue else None,
        }

    def _warm_up(self, glue: GlueProcess) -> None:
        """One second at the measured rate on a channel nobody reads: a cold glue
        stalls 0.1-0.6 s on its first messages, which is start-up, not steady state."""
        feed = JobFeed(self.client, "latency")
        started = time.monotonic()
        for n in range(LATENCY_RATE * WARM_UP_SECONDS):
            pause = started + n / LATENCY_RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            feed.put(payload(n, "warmup", sent=time.time()))
        wait_until(
            lambda: finishes(self.client, "latency") >= LATENCY_RATE * WARM_UP_SECONDS,
            timeout=60,
            what="the warm-up jobs to finish",
        )

    @staticmethod
    def _post(conn: http.client.HTTPConnection, channel: str, n: int) -> None:
        body = json.dumps({"id": str(n), "channel": channel, "data": {"n": n, "sent": time.time()}})
        conn.request("POST", f"/pub?id={channel}", body, {"Event-ID": str(n)})
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 201, 202):
            raise RuntimeError(f"direct publish answered HTTP {response.status}")

    # --- (3) RSS with jobs in flight ------------------------------------------------

    def rss(self) -> dict:
        port = free_port()
        holder = subprocess.Popen(
            [sys.executable, str(BENCH / "hold_server.py"), str(port)], stdout=subprocess.PIPE, text=True
        )
        self.helpers.append(holder)
        if holder.stdout.readline().strip() != "listening":
            raise RuntimeError("the holding publisher did not start")
        glue = self.glue("inflight", f"http://127.0.0.1:{port}", IN_FLIGHT_JOBS, http="timeout = 120.0")
        glue.start()
        time.sleep(1)
        idle = rss_kib(glue.process.pid)["VmRSS"]
        preload(JobFeed(self.client, "inflight"), IN_FLIGHT_JOBS, "bench")
        wait_until(
            lambda: self.client.zcard("feed.claimed:inflight") >= IN_FLIGHT_JOBS,
            timeout=60,
            what=f"{IN_FLIGHT_JOBS} jobs in flight",
        )
        peak = 0
        for _ in range(10):  # the last claimed jobs are still entering the pipeline
            peak = max(peak, rss_kib(glue.process.pid)["VmRSS"])
            time.sleep(0.1)
        holder.send_signal(signal.SIGUSR1)
        wait_until(
            lambda: finishes(self.client, "inflight") >= IN_FLIGHT_JOBS,
            timeout=120,
            what="the held jobs to finish",
        )
        after = rss_kib(glue.process.pid)
        glue.terminate()
        holder.kill()
        holder.wait(10)
        return {
            "jobs_in_flight": IN_FLIGHT_JOBS,
            "idle_rss_kib": idle,
            "in_flight_rss_kib": peak,
            "per_job_kib": round((peak - idle) / IN_FLIGHT_JOBS, 2),
            "after_drain_rss_kib": after["VmRSS"],
            "high_water_kib": after["VmHWM"],
        }


# --- report -------------------------------------------------------------------------


def verdicts(results: dict) -> list[dict]:
    t = results["throughput"]
    rows = [
        ("throughput_vs_wrk", t["glue"]["per_second"] / t["wrk"]["per_second"], ">="),
        ("throughput_vs_seed", t["glue"]["per_second"] / t["seed_loop"]["per_second"], ">="),
        ("latency_p99_ms", results["latency"]["p99_ms"], "<="),
    ]
    out = []
    for name, value, sense in rows:
        target = TARGETS[name]
        met = value >= target if sense == ">=" else value <= target
        out.append({"name": name, "value": round(value, 3), "target": f"{sense} {target:g}", "met": met})
    return out


def _percentiles(lat: dict) -> str:
    return f"p50 {lat['p50_ms']} ms  p90 {lat['p90_ms']} ms  p99 {lat['p99_ms']} ms  max {lat['max_ms']} ms"


def print_report(results: dict) -> None:
    t, lat, rss = results["throughput"], results["latency"], results["rss"]
    load = " ".join(f"{x:.1f}" for x in results["load_average_before"])
    print(
        f"\npush node flavour: {results['flavour']}  ({results['machine']['cpus']} cpus, loopback,"
        f" load average before {load}: others' work skews the figures)"
    )
    rows = [
        ("wrk raw POST /pub?id=bench (1 thread, 16 conn)", f"{t['wrk']['per_second']:,.0f} req/s"),
        ("seed-style loop (BRPOP, requests POST, finish)", f"{t['seed_loop']['per_second']:,.0f} msg/s"),
        (
            f"glue {' -> '.join(STAGES)} -> finish",
            f"{t['glue']['per_second']:,.0f} msg/s  (concurrency {t['glue']['concurrency']},"
            f" glue CPU {t['glue']['glue_cpu_percent']}%, redis CPU {t['glue']['redis_cpu_percent']}%)",
        ),
        (f"latency enqueue -> EventSource @ {LATENCY_RATE}/s", _percentiles(lat)),
        ("  baseline: POST straight to the node", _percentiles(results["latency_push_node_only"])),
        ("glue RSS idle", f"{rss['idle_rss_kib'] / 1024:.1f} MiB"),
        (
            f"glue RSS with {rss['jobs_in_flight']:,} jobs in flight",
            f"{rss['in_flight_rss_kib'] / 1024:.1f} MiB  ({rss['per_job_kib']} KiB per job)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print("\ntargets:")
    for v in results["targets"]:
        verdict = "met" if v["met"] else "MISSED"
        print(f"  {v['name']:<20} {v['value']:>10}  target {v['target']:<8} {verdict}")


def save(results: dict) -> Path:
    directory = BENCH / "results"
    directory.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"glue-{stamp}.json"
    path.write_text(text)
    (directory / "latest-glue.json").write_text(text)
    return path


def main() -> int:
    bench = Bench()
    print(f"push node flavour: {bench.node.flavour} ({bench.node.base_url}); redis {bench.redis.url}")
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "flavour": bench.node.flavour,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": os.getloadavg(),
    }
    try:
        print(f"(1) wrk {WRK_SECONDS}s ...", flush=True)
        wrk = bench.wrk()
        print(f"(1) seed-style loop {SEED_SECONDS}s ...", flush=True)
        seed = bench.seed_loop()
        print(f"(1) glue over {THROUGHPUT_JOBS:,} pre-loaded jobs ...", flush=True)
        glue = bench.glue_throughput()
        results["throughput"] = {"wrk": wrk, "seed_loop": seed, "glue": glue}
        print(f"(2) latency at {LATENCY_RATE}/s for {LATENCY_SECONDS}s ...", flush=True)
        results["latency"] = bench.latency()
        print(f"(2) baseline: POST straight to the node at {LATENCY_RATE}/s for {RAW_LATENCY_SECONDS}s ...")
        results["latency_push_node_only"] = bench.latency(via_glue=False, seconds=RAW_LATENCY_SECONDS)
        print(f"(3) RSS with {IN_FLIGHT_JOBS:,} jobs in flight ...", flush=True)
        results["rss"] = bench.rss()
    finally:
        bench.close()
    results["load_average_after"] = os.getloadavg()
    results["targets"] = verdicts(results)
    print_report(results)
    print(f"\nsaved {save(results).relative_to(REPO)} and bench/results/latest-glue.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
