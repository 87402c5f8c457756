"""`make bench`: how fast and how lean one glue process is, against baselines of the same run.

All on loopback, with a real redis-server, a real nginx push node (the
default flavour, push-stream, from its Debian package) and the real
`realtime-glue run` process:

1. saturated: json -> anonymize -> format -> http -> finish over a
   pre-loaded feed, as a ratio to wrk's raw POST rate on the same /pub
   endpoint (goal >= 0.5) and to a seed-style blocking loop (goal >= 5x);
2. everyday rate: a steady 2,000 msg/s after a one-second warm-up. The
   glue's CPU per job there as a ratio to its CPU per job saturated (goal
   <= 1.5), and enqueue -> EventSource latency as a ratio to the push
   node's own (the producer POSTing straight to /pub, measured before and
   after the glue runs; goal: p99 <= 3x), and absolute (p99 <= 10 ms);
3. the glue's RSS with 10,000 jobs in flight (a push node that holds every
   request), against the idle glue's.

Beside CPU, each glue figure counts what depends little on how busy the
machine is: system calls and context switches per job (`perf stat`).

BENCH_BEFORE=<git ref> (e.g. `make bench BENCH_BEFORE=main`) also measures the
glue of that commit in the same run, (1) and (2) back to back with this tree's
at the same load, and prints both side by side.

A measurement, not a test: a missed goal is printed, not failed; errors fail.
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
from dataclasses import dataclass
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
BEFORE = os.environ.get("BENCH_BEFORE", "")
WRK_SECONDS = 5
SEED_SECONDS = 5
LATENCY_RATE = 2_000
LATENCY_SECONDS = 10
RAW_LATENCY_SECONDS = 5
WARM_UP_SECONDS = 1
IN_FLIGHT_JOBS = 10_000
# [queue] claim_linger settings measured at LATENCY_RATE beside the default (latency for CPU).
CLAIM_LINGERS = (0.0, 0.010, 0.020)
DEFAULT_CLAIM_LINGER = 0.003
# The python floor (python_floor.py): its saturated run, and its everyday runs per linger.
FLOOR_JOBS = 20_000
FLOOR_SECONDS = 5
# Goals: (value, sense, target). Missed goals are printed, not failed.
GOALS = {
    "saturated_vs_wrk": (">=", 0.5),
    "saturated_vs_seed": (">=", 5.0),
    "cpu_per_job_everyday_vs_saturated": ("<=", 1.5),
    "latency_p99_vs_node_alone": ("<=", 3.0),
    "latency_p99_ms": ("<=", 10.0),
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


class Counters:
    """What a process spends while it is watched: CPU, and (with perf) system calls and
    context switches.

    System calls count round trips (a send and a receive each, and a poll for
    the next event); context switches count how often it slept and woke up.
    Unlike CPU time, neither depends much on how busy the machine is. Without a
    working `perf` (package linux-perf) they are left out.
    """

    EVENTS = ("raw_syscalls:sys_enter", "context-switches")

    def __init__(self, pid: int):
        self.pid = pid
        self.cpu = cpu_seconds(pid)
        self.perf = None
        if shutil.which("perf"):
            events = ",".join(self.EVENTS)
            self.perf = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", events, "-p", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

    def per_job(self, jobs: int) -> dict:
        """Stop watching; what was spent per job since the start."""
        figures = {"glue_cpu_us_per_job": round(1e6 * (cpu_seconds(self.pid) - self.cpu) / jobs, 1)}
        counts = self._perf_counts()
        for event, name in zip(self.EVENTS, ("syscalls_per_job", "switches_per_job"), strict=True):
            figures[name] = round(counts[event] / jobs, 2) if event in counts else None
        return figures

    def _perf_counts(self) -> dict[str, int]:
        if self.perf is None:
            return {}
        self.perf.send_signal(signal.SIGINT)
        _, report = self.perf.communicate(timeout=10)
        counts = {}
        for line in report.splitlines():
            value, _, event, *_ = [*line.split(","), "", "", ""]
            if value.isdigit():
                counts[event] = int(value)
        return counts


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


@dataclass(frozen=True)
class Checkout:
    """The glue source a measurement runs: this tree's, or a commit's (BENCH_BEFORE)."""

    label: str
    source: Path  # the directory holding the realtime_glue package

    @classmethod
    def this_tree(cls) -> Checkout:
        return cls("this tree", REPO / "glue")

    @classmethod
    def of_commit(cls, ref: str, workdir: Path) -> Checkout:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True, check=True
        ).stdout.strip()
        target = workdir / f"checkout-{commit}"
        target.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "glue"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        return cls(f"{ref} ({commit})", target / "glue")


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
        self.runs = 0

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

    def glue(
        self, name: str, node_url: str, concurrency: int, checkout: Checkout, http: str = "", queue: str = ""
    ) -> GlueProcess:
        """A glue process of `checkout` reading its own feed `name`-<n> (fresh for every run);
        `queue`: more keys of its [queue] table."""
        self.runs += 1
        feed = f"{name}-{self.runs}"
        directory = self.workdir / feed
        directory.mkdir()
        stages = ", ".join(f'"{s}"' for s in STAGES)
        pipelines = f"[pipelines.{feed}]\nstages = [{stages}]\nconcurrency = {concurrency}\n"
        if http:
            pipelines += f"[pipelines.{feed}.http]\n{http}\n"
        config = write_config(directory, self.redis.url, [node_url], pipelines, queue_extra=queue)
        glue = GlueProcess(config, feed, env={"PYTHONPATH": str(checkout.source)})
        self.glues.append(glue)
        return glue

    # --- (1) saturated ----------------------------------------------------------------

    def wrk(self) -> dict:
        url = f"{self.node.cluster_url}/pub?id=bench"
        load = load_average()
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
        return {
            "per_second": float(rate.group(1)),
            "threads": 1,
            "connections": 16,
            "seconds": WRK_SECONDS,
            "load_average": load,
        }

    def seed_loop(self) -> dict:
        jobs = 15_000
        preload(JobFeed(self.client, "seed"), jobs, "bench")
        load = load_average()
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
        return {**json.loads(done.stdout), "load_average": load}

    def saturated(self, checkout: Checkout) -> dict:
        glue = self.glue("throughput", self.node.cluster_url, CONCURRENCY, checkout)
        preload(JobFeed(self.client, glue.pipeline), THROUGHPUT_JOBS, "bench")
        load = load_average()
        glue.start()
        started, first = time.monotonic(), finishes(self.client, glue.pipeline)
        counters, cpu_redis = Counters(glue.process.pid), cpu_seconds(self.redis.process.pid)
        wait_until(
            lambda: finishes(self.client, glue.pipeline) >= THROUGHPUT_JOBS,
            timeout=300,
            interval=0.02,
            what=f"{THROUGHPUT_JOBS} finished jobs",
        )
        elapsed = time.monotonic() - started
        cpu_glue = cpu_seconds(glue.process.pid) - counters.cpu
        per_job = counters.per_job(THROUGHPUT_JOBS - first)
        cpu_redis = cpu_seconds(self.redis.process.pid) - cpu_redis
        stalled = self.client.scard(f"feed.stalled:{glue.pipeline}")
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
            **per_job,
            "load_average": load,
        }

    # --- (2) everyday rate ------------------------------------------------------------

    def latency(
        self,
        checkout: Checkout | None,
        seconds: int = LATENCY_SECONDS,
        claim_linger: float | None = None,
        floor_wait: float | None = None,
    ) -> dict:
        """Enqueue -> glue -> push node -> EventSource at LATENCY_RATE; with checkout=None
        the producer POSTs straight to the node (the push node's own share). `claim_linger`:
        the glue's [queue] claim_linger (None: its default). With `floor_wait`, the python
        floor waiting that long after a claim short of a full one consumes the feed instead."""
        total = LATENCY_RATE * seconds
        self.runs += 1
        channel = f"latency-{self.runs}"
        consumer = None  # (feed, pid, stop) of the glue or the floor; None: the node alone
        if floor_wait is not None:
            feed_name, process = self._floor(floor_wait)
            consumer = (feed_name, process.pid, process.terminate)
        elif checkout is not None:
            queue = "" if claim_linger is None else f"claim_linger = {claim_linger}"
            glue = self.glue("latency", self.node.cluster_url, CONCURRENCY, checkout, queue=queue)
            glue.start()
            consumer = (glue.pipeline, glue.process.pid, glue.terminate)
        if consumer is not None:
            self._warm_up(consumer[0])
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
        if consumer is not None:
            feed = JobFeed(self.client, consumer[0])
            send = lambda n: feed.put(payload(n, channel, sent=time.time()))  # noqa: E731
        else:
            conn = http.client.HTTPConnection(self.node.host, self.node.cluster_port, timeout=10)
            send = lambda n: self._post(conn, channel, n)  # noqa: E731
        load = load_average()
        started = time.monotonic()
        counters = Counters(consumer[1]) if consumer is not None else None
        for n in range(total):
            pause = started + n / LATENCY_RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            send(n)
        put_seconds = time.monotonic() - started
        subscriber.wait(60)
        per_job = {}
        if consumer is not None:
            cpu = cpu_seconds(consumer[1]) - counters.cpu
            per_job = {"glue_cpu_percent": round(100 * cpu / put_seconds, 1), **counters.per_job(total)}
            consumer[2]()
        latencies = json.loads(out.read_text())["latencies_ms"]
        if len(latencies) < total:
            raise RuntimeError(f"the subscriber on {channel} received {len(latencies)} of {total} messages")
        return {
            "messages": total,
            "warm_up_seconds": WARM_UP_SECONDS if consumer is not None else 0,
            "sent_per_second": round(total / put_seconds, 1),
            **summary(latencies),
            **per_job,
            "load_average": load,
            "latencies_ms": latencies,
        }

    def _warm_up(self, feed_name: str) -> None:
        """One second at the measured rate on a channel nobody reads: a cold glue
        stalls 0.1-0.6 s on its first messages, which is start-up, not steady state."""
        feed = JobFeed(self.client, feed_name)
        started = time.monotonic()
        for n in range(LATENCY_RATE * WARM_UP_SECONDS):
            pause = started + n / LATENCY_RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            feed.put(payload(n, "warmup", sent=time.time()))
        wait_until(
            lambda: finishes(self.client, feed_name) >= LATENCY_RATE * WARM_UP_SECONDS,
            timeout=60,
            what="the warm-up jobs to finish",
        )

    # --- (3) the python floor -------------------------------------------------------

    def _floor(self, linger: float) -> tuple[str, subprocess.Popen]:
        """python_floor.py consuming a fresh feed of its own."""
        self.runs += 1
        feed = f"floor-{self.runs}"
        process = subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "python_floor.py"),
                self.redis.url,
                feed,
                self.node.cluster_url,
                str(linger),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO / "glue")},
        )
        self.helpers.append(process)
        return feed, process

    def floor_saturated(self) -> dict:
        feed, process = self._floor(0.0)
        preload(JobFeed(self.client, feed), FLOOR_JOBS, "bench")
        started, first, cpu = time.monotonic(), finishes(self.client, feed), cpu_seconds(process.pid)
        # The last claim's finishes are written with the next claim (up to a second later).
        wait_until(
            lambda: finishes(self.client, feed) >= FLOOR_JOBS - 64,
            timeout=300,
            interval=0.02,
            what=f"the python floor to finish {FLOOR_JOBS} jobs",
        )
        elapsed, done = time.monotonic() - started, finishes(self.client, feed) - first
        cpu = cpu_seconds(process.pid) - cpu
        process.terminate()
        process.wait(10)
        return {
            "jobs": done,
            "per_second": round(done / elapsed, 1),
            "cpu_us_per_job": round(1e6 * cpu / done, 1),
        }

    @staticmethod
    def _post(conn: http.client.HTTPConnection, channel: str, n: int) -> None:
        body = json.dumps({"id": str(n), "channel": channel, "data": {"n": n, "sent": time.time()}})
        conn.request("POST", f"/pub?id={channel}", body, {"Event-ID": str(n)})
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 201, 202):
            raise RuntimeError(f"direct publish answered HTTP {response.status}")

    # --- (3) RSS with jobs in flight ------------------------------------------------

    def rss(self, checkout: Checkout) -> dict:
        port = free_port()
        holder = subprocess.Popen(
            [sys.executable, str(BENCH / "hold_server.py"), str(port)], stdout=subprocess.PIPE, text=True
        )
        self.helpers.append(holder)
        if holder.stdout.readline().strip() != "listening":
            raise RuntimeError("the holding publisher did not start")
        glue = self.glue(
            "inflight", f"http://127.0.0.1:{port}", IN_FLIGHT_JOBS, checkout, http="timeout = 120.0"
        )
        glue.start()
        time.sleep(1)
        idle = rss_kib(glue.process.pid)["VmRSS"]
        preload(JobFeed(self.client, glue.pipeline), IN_FLIGHT_JOBS, "bench")
        wait_until(
            lambda: self.client.zcard(f"feed.claimed:{glue.pipeline}") >= IN_FLIGHT_JOBS,
            timeout=60,
            what=f"{IN_FLIGHT_JOBS} jobs in flight",
        )
        peak = 0
        for _ in range(10):  # the last claimed jobs are still entering the pipeline
            peak = max(peak, rss_kib(glue.process.pid)["VmRSS"])
            time.sleep(0.1)
        holder.send_signal(signal.SIGUSR1)
        wait_until(
            lambda: finishes(self.client, glue.pipeline) >= IN_FLIGHT_JOBS,
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


def summary(latencies: list[float]) -> dict:
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p90_ms": round(percentile(latencies, 0.90), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }


# --- report -------------------------------------------------------------------------


def goals(results: dict, glue: dict) -> list[dict]:
    """The goals for one checkout's figures (`glue`), as ratios to this run's baselines."""
    saturated, everyday = glue["saturated"], glue["everyday"]
    values = {
        "saturated_vs_wrk": saturated["per_second"] / results["wrk"]["per_second"],
        "saturated_vs_seed": saturated["per_second"] / results["seed_loop"]["per_second"],
        "cpu_per_job_everyday_vs_saturated": everyday["glue_cpu_us_per_job"]
        / saturated["glue_cpu_us_per_job"],
        "latency_p99_vs_node_alone": everyday["p99_ms"] / results["node_alone"]["p99_ms"],
        "latency_p99_ms": everyday["p99_ms"],
    }
    out = []
    for name, (sense, target) in GOALS.items():
        value = values[name]
        met = value >= target if sense == ">=" else value <= target
        out.append({"name": name, "value": round(value, 3), "target": f"{sense} {target:g}", "met": met})
    return out


def _percentiles(lat: dict) -> str:
    return f"p50 {lat['p50_ms']} ms  p90 {lat['p90_ms']} ms  p99 {lat['p99_ms']} ms  max {lat['max_ms']} ms"


def _per_job(figures: dict) -> str:
    return (
        f"per job: {figures['glue_cpu_us_per_job']} us CPU, {figures['syscalls_per_job']} system calls,"
        f" {figures['switches_per_job']} context switches"
    )


def print_report(results: dict) -> None:
    print(
        f"\npush node flavour: {results['flavour']}  ({results['machine']['cpus']} cpus, loopback; others'"
        " work on this machine skews the figures: the load average is beside each)"
    )
    rows = [
        (
            "wrk raw POST /pub?id=bench (1 thread, 16 conn)",
            f"{results['wrk']['per_second']:,.0f} req/s  [load {results['wrk']['load_average']}]",
        ),
        (
            "seed-style loop (BRPOP, requests POST, finish)",
            f"{results['seed_loop']['per_second']:,.0f} msg/s  [load {results['seed_loop']['load_average']}]",
        ),
        (
            f"node alone: POST -> EventSource @ {LATENCY_RATE}/s",
            f"{_percentiles(results['node_alone'])}  [load {results['node_alone']['load_average']}]",
        ),
    ]
    for label, glue in results["glues"].items():
        s, e = glue["saturated"], glue["everyday"]
        rows += [
            (f"[{label}]", ""),
            (
                f"  saturated: {' -> '.join(STAGES)} -> finish",
                f"{s['per_second']:,.0f} msg/s  (concurrency {s['concurrency']}, glue CPU"
                f" {s['glue_cpu_percent']}%, redis CPU {s['redis_cpu_percent']}%)"
                f"  [load {s['load_average']}]",
            ),
            ("", _per_job(s)),
            (
                f"  everyday {LATENCY_RATE}/s: enqueue -> EventSource",
                f"{_percentiles(e)}  [load {e['load_average']}]",
            ),
            ("", f"{_per_job(e)}; glue CPU {e['glue_cpu_percent']}%"),
        ]
    rss = results["rss"]
    rows += [
        ("glue RSS idle (this tree)", f"{rss['idle_rss_kib'] / 1024:.1f} MiB"),
        (
            f"glue RSS with {rss['jobs_in_flight']:,} jobs in flight",
            f"{rss['in_flight_rss_kib'] / 1024:.1f} MiB  ({rss['per_job_kib']} KiB per job)",
        ),
    ]
    rows += _trade_off_rows(results)
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    labels = list(results["glues"])
    print("\ngoals:" + "".join(f"  {label:>22}" for label in labels))
    names = [g["name"] for g in results["glues"][labels[0]]["goals"]]
    for index, name in enumerate(names):
        cells = []
        for label in labels:
            goal = results["glues"][label]["goals"][index]
            cells.append(f"{goal['value']:>10} {'met' if goal['met'] else 'MISSED':<6}")
        target = results["glues"][labels[0]]["goals"][index]["target"]
        print(f"  {name:<36} {target:<7}" + "".join(f"  {c:>22}" for c in cells))


def _trade_off_rows(results: dict) -> list[tuple[str, str]]:
    """[queue] claim_linger's latency for CPU, and the python floor beside the glue."""
    glue = results["glues"][list(results["glues"])[-1]]
    saturated = glue["saturated"]["glue_cpu_us_per_job"]
    node_p99 = results["node_alone"]["p99_ms"]
    runs = {**results["claim_lingers"], f"{DEFAULT_CLAIM_LINGER:g} (default)": glue["everyday"]}
    rows = [("claim_linger at 2,000/s (this tree)", "CPU per job (x saturated)   p50   p99 (x node alone)")]
    for linger, run in sorted(runs.items(), key=lambda item: float(item[0].split()[0])):
        cpu = run["glue_cpu_us_per_job"]
        rows.append(
            (
                f"  {linger} s",
                f"{cpu} us ({cpu / saturated:.2f}x)   {run['p50_ms']} ms   {run['p99_ms']} ms"
                f" ({run['p99_ms'] / node_p99:.1f}x)  [load {run['load_average']}]",
            )
        )
    floor = results["python_floor"]
    low = floor["saturated"]["cpu_us_per_job"]
    wrk = results["wrk"]["per_second"]
    rows += [
        (
            "python floor (python_floor.py) saturated",
            f"{floor['saturated']['per_second']:,.0f} msg/s, {low} us per job: one whole core allows"
            f" {1e6 / low:,.0f}/s = {1e6 / low / wrk:.2f}x wrk",
        )
    ]
    for run in floor["everyday"]:
        cpu = run["glue_cpu_us_per_job"]
        rows.append(
            (
                f"  python floor at 2,000/s, wait {run['claim_linger']:g} s",
                f"{cpu} us per job = {cpu / low:.2f}x its saturated, {cpu / saturated:.2f}x the glue's;"
                f"  p50 {run['p50_ms']} ms  p99 {run['p99_ms']} ms ({run['p99_ms'] / node_p99:.1f}x)",
            )
        )
    return rows


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
    checkouts = [Checkout.this_tree()]
    if BEFORE:
        checkouts.insert(0, Checkout.of_commit(BEFORE, bench.workdir))
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "flavour": bench.node.flavour,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": os.getloadavg(),
        "glues": {c.label: {} for c in checkouts},
    }
    try:
        print(f"(1) wrk {WRK_SECONDS}s ...", flush=True)
        results["wrk"] = bench.wrk()
        print(f"(1) seed-style loop {SEED_SECONDS}s ...", flush=True)
        results["seed_loop"] = bench.seed_loop()
        for checkout in checkouts:
            print(f"(1) glue [{checkout.label}] over {THROUGHPUT_JOBS:,} pre-loaded jobs ...", flush=True)
            results["glues"][checkout.label]["saturated"] = bench.saturated(checkout)
        node_alone = []
        print(f"(2) node alone: POST straight to the node at {LATENCY_RATE}/s for {RAW_LATENCY_SECONDS}s ...")
        node_alone.append(bench.latency(None, seconds=RAW_LATENCY_SECONDS))
        for checkout in checkouts:
            print(f"(2) glue [{checkout.label}] at {LATENCY_RATE}/s for {LATENCY_SECONDS}s ...", flush=True)
            results["glues"][checkout.label]["everyday"] = bench.latency(checkout)
        print(f"(2) node alone again at {LATENCY_RATE}/s for {RAW_LATENCY_SECONDS}s ...")
        node_alone.append(bench.latency(None, seconds=RAW_LATENCY_SECONDS))
        # Both node-alone runs pooled: the glue runs sat between them.
        pooled = [x for run in node_alone for x in run["latencies_ms"]]
        results["node_alone"] = {
            **summary(pooled),
            "messages": len(pooled),
            "load_average": round(statistics.mean(run["load_average"] for run in node_alone), 2),
            "runs": [{k: v for k, v in run.items() if k != "latencies_ms"} for run in node_alone],
        }
        results["claim_lingers"] = {}
        for linger in CLAIM_LINGERS:
            print(f"(2) glue [{checkouts[-1].label}] at claim_linger {linger:g} s ...", flush=True)
            run = bench.latency(checkouts[-1], claim_linger=linger)
            run.pop("latencies_ms")
            results["claim_lingers"][f"{linger:g}"] = run
        print(f"(3) RSS with {IN_FLIGHT_JOBS:,} jobs in flight ...", flush=True)
        results["rss"] = bench.rss(checkouts[-1])
        print(
            f"(4) python floor: {FLOOR_JOBS:,} pre-loaded jobs, then {LATENCY_RATE}/s per wait ...",
            flush=True,
        )
        results["python_floor"] = {"saturated": bench.floor_saturated(), "everyday": []}
        for wait in sorted({*CLAIM_LINGERS, DEFAULT_CLAIM_LINGER}):
            run = bench.latency(None, seconds=FLOOR_SECONDS, floor_wait=wait)
            run.pop("latencies_ms")
            results["python_floor"]["everyday"].append({"claim_linger": wait, **run})
    finally:
        bench.close()
    for glue in results["glues"].values():
        glue["everyday"].pop("latencies_ms", None)
        glue["goals"] = goals(results, glue)
    results["load_average_after"] = os.getloadavg()
    print_report(results)
    print(f"\nsaved {save(results).relative_to(REPO)} and bench/results/latest-glue.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
