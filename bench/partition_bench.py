"""`make bench`: glue throughput with 1, 2 and 3 instances over a partitioned feed, beside one
instance alone on a plain feed, as ratios measured in one run.

All on loopback, with a real redis-server, one real push-stream node and real
`realtime-glue run` processes (json -> anonymize -> format -> http -> finish):

- `alone`: one instance on an unpartitioned feed (partitions = 1, today's glue);
- `N instances`: N instances on the same feed in PARTITIONS partitions, each
  holding its fair share (ceil(PARTITIONS / N)) through the partition leases.

Each run puts the jobs (spread over many channels, so every partition has
work) on staging feeds, starts its instances, waits until they share the
partitions fairly and a little more (SETTLE_SECONDS: a glue starts with its
push node marked down until its backlog drainer has looked, and jobs claimed
before that go through the backlog), then renames the staging keys to the
pipeline's feeds in one transaction, so every job appears at once, and
measures the rate until MEASURED_SHARE of them are finished (not the uneven
tail). Messages that went through a node's backlog meanwhile are counted
(LPUSH calls: each is a hold) and printed: the rate means little if there
are many.

The machine has 2 cores shared by Redis, nginx and the glue processes: the
ratios say what more instances buy here, not on a host with more cores.

Results: bench/results/partitions-<timestamp>.json and bench/results/latest-partitions.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

from glue_bench import cpu_seconds, payload  # noqa: E402

from realtime_glue.lease import lease_holder  # noqa: E402
from realtime_glue.partitions import PartitionedFeed, partition_feed_names  # noqa: E402
from support.glue_process import GlueProcess, wait_until, write_config  # noqa: E402
from support.push_node import PushNode  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402

STAGES = ["json", "anonymize", "format", "http"]
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", 6))
JOBS = int(os.environ.get("BENCH_PARTITION_JOBS", 60_000))
CHANNELS = 600
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 256))
INSTANCES = (1, 2, 3)
MEASURED_SHARE = 0.7
# Every configuration is run this many times, interleaved; the report gives the median.
ROUNDS = int(os.environ.get("BENCH_PARTITION_ROUNDS", 2))
SETTLE_SECONDS = 3.0


class PartitionBench:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="partition-bench-"))
        self.redis = RedisServer().start()
        self.client = self.redis.client()
        self.node = PushNode(
            overrides={"push_stream_access_log": "off", "push_stream_shared_memory_size": "512m"}
        ).start()
        self.glues: list[GlueProcess] = []

    def close(self) -> None:
        for glue in self.glues:
            if glue.alive():
                glue.kill()
        self.node.cleanup()
        self.redis.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def config(self, name: str, partitions: int) -> Path:
        directory = self.workdir / name
        directory.mkdir()
        stages = ", ".join(f'"{s}"' for s in STAGES)
        pipelines = f"[pipelines.{name}]\nstages = [{stages}]\nconcurrency = {CONCURRENCY}\n"
        pipelines += f"partitions = {partitions}\n"
        return write_config(directory, self.redis.url, [self.node.base_url], pipelines)

    def finished(self, feeds: list[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for feed in feeds:
            pipe.get(f"feed.finishes:{feed}")
        return sum(int(v or 0) for v in pipe.execute())

    def shared_fairly(self, feeds: list[str], glues: list[GlueProcess]) -> bool:
        if len(feeds) == 1:
            return True
        pids = [str(g.process.pid) for g in glues]
        held = [(lease_holder(self.client, f) or "::").split(":")[1] for f in feeds]
        share = -(-len(feeds) // len(glues))
        return set(held) == set(pids) and max(held.count(p) for p in pids) <= share

    def nginx_cpu(self) -> float:
        """CPU seconds of the push node's nginx, master and workers."""
        master = self.node.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return sum(cpu_seconds(int(pid)) for pid in [master, *children])

    def lpush_calls(self) -> int:
        return int(self.client.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))

    def stage(self, name: str, partitions: int) -> None:
        """Put the jobs on staging feeds: staging-<name>, or its partitions."""
        producer = PartitionedFeed(self.client, f"staging-{name}", partitions)
        for start in range(0, JOBS, 1000):
            numbers = range(start, min(JOBS, start + 1000))
            channels = [f"bench-{n % CHANNELS}" for n in numbers]
            producer.put_many([payload(n, c) for n, c in zip(numbers, channels, strict=True)], channels)

    def release_staged(self, name: str, partitions: int) -> None:
        """Every staged job appears on the pipeline's feeds at once (one transaction)."""
        pipe = self.client.pipeline(transaction=True)
        staged = partition_feed_names(f"staging-{name}", partitions)
        for source, target in zip(staged, partition_feed_names(name, partitions), strict=True):
            for key in ("ids", "items", "published", "publishes"):
                pipe.rename(f"feed.{key}:{source}", f"feed.{key}:{target}")
        pipe.execute()

    def run(self, name: str, instances: int, partitions: int) -> dict:
        feeds = partition_feed_names(name, partitions)
        self.stage(name, partitions)
        config = self.config(name, partitions)
        glues = [GlueProcess(config, name) for _ in range(instances)]
        self.glues += glues
        for glue in glues:
            glue.start()
        wait_until(lambda: self.shared_fairly(feeds, glues), timeout=60, what=f"{name}: a fair share each")
        time.sleep(SETTLE_SECONDS)
        lpush = self.lpush_calls()
        self.release_staged(name, partitions)
        started, first = time.monotonic(), self.finished(feeds)
        cpu_glue = sum(cpu_seconds(g.process.pid) for g in glues)
        cpu_redis = cpu_seconds(self.redis.process.pid)
        cpu_nginx = self.nginx_cpu()
        target = int(MEASURED_SHARE * JOBS)
        wait_until(
            lambda: self.finished(feeds) >= target, timeout=600, interval=0.02, what=f"{name}: jobs finished"
        )
        elapsed = time.monotonic() - started
        measured = self.finished(feeds) - first
        cpu_glue = sum(cpu_seconds(g.process.pid) for g in glues) - cpu_glue
        cpu_redis = cpu_seconds(self.redis.process.pid) - cpu_redis
        cpu_nginx = self.nginx_cpu() - cpu_nginx
        held = self.lpush_calls() - lpush
        wait_until(lambda: self.finished(feeds) >= JOBS, timeout=600, interval=0.1, what=f"{name}: the rest")
        stalled = sum(self.client.scard(f"feed.stalled:{f}") for f in feeds)
        for glue in glues:
            glue.terminate()
        if stalled:
            raise RuntimeError(f"{stalled} jobs stalled in {name}:\n{glues[0].log()}")
        return {
            "instances": instances,
            "partitions": partitions,
            "jobs_measured": measured,
            "seconds": round(elapsed, 3),
            "per_second": round(measured / elapsed, 1),
            "glue_cpu_percent": round(100 * cpu_glue / elapsed, 1),
            "redis_cpu_percent": round(100 * cpu_redis / elapsed, 1),
            "glue_cpu_us_per_job": round(1e6 * cpu_glue / measured, 1),
            # Glue, Redis and nginx together: what one job costs the machine.
            "total_cpu_us_per_job": round(1e6 * (cpu_glue + cpu_redis + cpu_nginx) / measured, 1),
            "held_in_node_backlog": held,
            "load_average": os.getloadavg()[0],
        }


CONFIGURATIONS = {
    "alone": "1 instance, plain feed (alone)",
    **{f"instances{n}": f"{n} instance(s), {PARTITIONS} partitions" for n in INSTANCES},
}


def medians(results: dict) -> dict:
    out = {}
    for name in CONFIGURATIONS:
        runs = [r[name] for r in results["rounds"]]
        out[name] = {
            key: round(statistics.median(run[key] for run in runs), 1)
            for key in (
                "per_second",
                "glue_cpu_percent",
                "redis_cpu_percent",
                "glue_cpu_us_per_job",
                "total_cpu_us_per_job",
            )
        }
        out[name]["held_in_node_backlog"] = sum(run["held_in_node_backlog"] for run in runs)
    return out


def projected_ceiling(run: dict, instances: int, cpus: int) -> float:
    """Messages/s the CPU per job allows on idle cores: each glue process uses at most one core,
    and glue, Redis and nginx together at most every core."""
    return min(instances * 1e6 / run["glue_cpu_us_per_job"], cpus * 1e6 / run["total_cpu_us_per_job"])


def print_report(results: dict) -> None:
    load = " ".join(f"{x:.1f}" for x in results["load_average_before"])
    print(
        f"\n{results['machine']['cpus']} cpus, loopback, one push-stream node, load average before {load}"
        " (others' work skews the figures; compare the ratios)"
    )
    for number, round_ in enumerate(results["rounds"], 1):
        alone = round_["alone"]["per_second"]
        ratios = "  ".join(
            f"{n}: {round_[n]['per_second'] / alone:.2f}x" for n in CONFIGURATIONS if n != "alone"
        )
        loads = ", ".join(f"{round_[n]['load_average']:.1f}" for n in CONFIGURATIONS)
        print(f"  round {number}: alone {alone:,.0f} msg/s; {ratios}  (load {loads})")
    print(f"\n  median of {len(results['rounds'])} rounds:")
    print(
        f"  {'run':<34} {'msg/s':>9} {'vs alone':>9} {'glue CPU':>9} {'redis CPU':>10} {'µs/job':>7}"
        f" {'all µs/job':>10} {'via backlog':>11}"
    )
    median = results["median"]
    for name, label in CONFIGURATIONS.items():
        run = median[name]
        print(
            f"  {label:<34} {run['per_second']:>9,.0f} {results['ratios_to_alone'][name]:>8.2f}x"
            f" {run['glue_cpu_percent']:>8}% {run['redis_cpu_percent']:>9}% {run['glue_cpu_us_per_job']:>7}"
            f" {run['total_cpu_us_per_job']:>10} {run['held_in_node_backlog']:>11}"
        )
    cpus = results["machine"]["cpus"]
    print(f"\n  projected from the CPU per job, for {cpus} idle cores (not measured):")
    for name, label in CONFIGURATIONS.items():
        run, count = median[name], (1 if name == "alone" else int(name.removeprefix("instances")))
        ceiling = projected_ceiling(run, count, cpus)
        alone = projected_ceiling(median["alone"], 1, cpus)
        print(f"  {label:<34} {ceiling:>9,.0f} {ceiling / alone:>8.2f}x")
    print(
        "\n  µs/job: the glue processes' CPU per job; all µs/job: glue, Redis and nginx together."
        "\n  On a busy machine more processes also win a larger share of the contended cores, so"
        "\n  compare the rates with the load beside them, and the CPU per job, which load skews less."
    )


def save(results: dict) -> Path:
    directory = BENCH / "results"
    directory.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"partitions-{stamp}.json"
    path.write_text(text)
    (directory / "latest-partitions.json").write_text(text)
    return path


def main() -> int:
    bench = PartitionBench()
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "flavour": bench.node.flavour,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "jobs": JOBS,
        "channels": CHANNELS,
        "concurrency": CONCURRENCY,
        "stages": STAGES,
        "load_average_before": os.getloadavg(),
        "rounds": [],
    }
    try:
        for number in range(1, ROUNDS + 1):
            round_ = {}
            print(f"round {number}: one instance alone on a plain feed, {JOBS:,} jobs ...", flush=True)
            round_["alone"] = bench.run(f"alone{number}", 1, 1)
            for count in INSTANCES:
                print(f"round {number}: {count} instance(s) over {PARTITIONS} partitions ...", flush=True)
                round_[f"instances{count}"] = bench.run(f"part{count}r{number}", count, PARTITIONS)
            results["rounds"].append(round_)
    finally:
        bench.close()
    results["median"] = medians(results)
    alone = results["median"]["alone"]["per_second"]
    results["ratios_to_alone"] = {
        name: round(run["per_second"] / alone, 3) for name, run in results["median"].items()
    }
    results["projected_ceiling_per_second"] = {
        name: round(
            projected_ceiling(
                run, 1 if name == "alone" else int(name.removeprefix("instances")), os.cpu_count()
            )
        )
        for name, run in results["median"].items()
    }
    results["load_average_after"] = os.getloadavg()
    print_report(results)
    print(f"\nsaved {save(results).relative_to(REPO)} and bench/results/latest-partitions.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
