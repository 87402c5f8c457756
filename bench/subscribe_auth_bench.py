"""`make bench`: what checking signed subscribe URLs costs a push node's connection setup.

Two nodes, both nginx rendered from nginx/push-stream.conf (tests/support/push_node.py), one
worker each, on loopback: one with the check as the role deploys it (private prefixes, the
key set, our module libnginx-mod-http-subscribe-signature (nginx/subscribe-signature/) in the
subscriber's own request: the query parsed once, HMAC-SHA256 from each key's inner and outer
SHA-256 states precomputed at configuration time, a constant-time comparison), one with it
off (push_stream_private_channel_prefixes: []). A burst of BENCH_AUTH_SUBSCRIBERS EventSource
subscribers (bench/ev_client.c, BENCH_AUTH_INFLIGHT connecting at once) opens the same signed
URL on a fresh channel, and is closed again once every one has its 200 (or its 403). Three
variants, interleaved over BENCH_AUTH_ROUNDS rounds:

- off:         the node without the check (the query string is there, and ignored);
- on public:   the node with the check, a public channel (no private prefix matches; no check runs);
- on signed:   the node with the check, a private channel: the signature is checked.

Figures: the node's CPU per subscribe (its worker's schedstat, from the burst's start to
its last 200) and the burst's subscribe rate (both client and node share the two cores,
so the rate also carries the client), and the node's memory per subscriber held (its
worker's PSS growth while they are held, one burst on a fresh node). The check must cost
under 10 % of connection setup: `on signed` / `off` node CPU <= 1.10. Medians over the
rounds; the machine is shared, so only ratios from the same run mean anything. Results:
bench/results/subscribe-auth-<time>.json and latest-subscribe-auth.json. Takes
/tmp/rg-bench.lock in the Makefile.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "glue"))

from node_run import build_programs  # noqa: E402
from testbed import process_cpu_seconds  # noqa: E402

from realtime_glue.signing import KeySet, SubscribeKey, sign  # noqa: E402
from support.push_node import PushNode  # noqa: E402

SUBSCRIBERS = int(os.environ.get("BENCH_AUTH_SUBSCRIBERS", 8000))
INFLIGHT = int(os.environ.get("BENCH_AUTH_INFLIGHT", 64))
ROUNDS = int(os.environ.get("BENCH_AUTH_ROUNDS", 5))
TARGET = 1.10
KEY = SubscribeKey("bench-1", os.urandom(32))
KEYS = KeySet({KEY.id: KEY}, ("firehose-",))
RESULTS = BENCH / "results"


def node_overrides(check: bool) -> dict:
    """A node with the check (private prefixes) or without it; the same key set on both."""
    return {
        "push_stream_worker_processes": 1,
        "push_stream_worker_connections": SUBSCRIBERS + 1024,
        "push_stream_worker_rlimit_nofile": 19_000,
        "push_stream_listen_backlog": 4096,
        # Nothing written per connection on either node: the check is what differs.
        "push_stream_access_log": "off",
        "push_stream_error_log": "/dev/null warn",
        "push_stream_private_channel_prefixes": ["private-", "firehose-"] if check else [],
        "push_stream_subscribe_keys": [{"id": KEY.id, "secret": base64.b64encode(KEY.secret).decode()}],
    }


def assert_checks(node: PushNode) -> None:
    """The node refuses an unsigned and a tampered URL: a check that let everyone in would
    look cheap."""
    channel = f"private-bench-{uuid.uuid4().hex[:8]}"
    query = sign(KEYS, channel, 3600).query
    tampered = query[:-1] + ("A" if query[-1] != "A" else "B")
    for path in (f"/ev/{channel}", f"/ev/{channel}?{tampered}"):
        status, _, _ = node.request("GET", path, timeout=5)
        if status != 403:
            raise RuntimeError(f"{path}: HTTP {status}, not 403")


def workers(node: PushNode) -> list[int]:
    children = Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def burst(node: PushNode, client: Path, path: str, channel: str) -> dict:
    """SUBSCRIBERS connections to `path`, until each has its answer; then closed."""
    pids = workers(node)
    memory_before = pss_kib(pids)
    cpu_before = process_cpu_seconds(pids)
    started = time.monotonic()
    process = subprocess.Popen(
        [str(client), node.host, str(node.port), "127.0.0.1", str(SUBSCRIBERS), path, str(INFLIGHT), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().split()
    seconds = time.monotonic() - started
    cpu = process_cpu_seconds(pids) - cpu_before
    # Held subscribers' memory: meaningful on a fresh node (later bursts reuse freed memory).
    memory = pss_kib(pids) - memory_before
    process.stdin.write("quit\n")
    process.stdin.close()
    process.wait(60)
    if not line or line[0] != "ready":
        raise RuntimeError(f"ev_client: {line}")
    opened, failed = int(line[1]), int(line[2])
    deadline = time.monotonic() + 60
    while node.subscribers(channel) and time.monotonic() < deadline:  # the resets reach the node
        time.sleep(0.1)
    return {
        "opened": opened,
        "failed": failed,
        "seconds": seconds,
        "subscribes_per_second": SUBSCRIBERS / seconds,
        "node_cpu_us_per_subscribe": cpu / SUBSCRIBERS * 1e6,
        "node_kib_per_subscriber": memory / SUBSCRIBERS,
    }


def start_node(check: bool) -> PushNode:
    return PushNode(overrides=node_overrides(check)).start()


def main() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    client = build_programs()["ev_client"]
    load = os.getloadavg()[0]
    checks = {"off": False, "on public": True, "on signed": True}
    nodes = {check: start_node(check) for check in set(checks.values())}
    variants = {
        "off": (nodes[False], "private-"),
        "on public": (nodes[True], "public-"),
        "on signed": (nodes[True], "private-"),
    }
    rounds: dict[str, list[dict]] = {name: [] for name in variants}
    try:
        assert_checks(nodes[True])
        for round_number in range(ROUNDS):
            order = list(variants)
            order = order[round_number % len(order) :] + order[: round_number % len(order)]
            for name in order:
                node, prefix = variants[name]
                channel = f"{prefix}bench-{uuid.uuid4().hex[:8]}"
                signed = sign(KEYS, channel, 3600)
                result = burst(node, client, f"/ev/{channel}?{signed.query}", channel)
                if result["failed"]:
                    raise RuntimeError(f"{name}: {result['failed']} subscribers refused or failed")
                rounds[name].append(result)
                print(
                    f"round {round_number + 1} {name:10s} {result['subscribes_per_second']:8.0f} subscribes/s"
                    f"  node {result['node_cpu_us_per_subscribe']:6.1f} us/subscribe",
                    flush=True,
                )
    finally:
        for node in nodes.values():
            node.cleanup()

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[name])

    summary = {
        name: {
            "subscribes_per_second": median(name, "subscribes_per_second"),
            "node_cpu_us_per_subscribe": median(name, "node_cpu_us_per_subscribe"),
        }
        for name in variants
    }
    # Memory per subscriber held: one burst on a fresh node per variant.
    for name, (_, prefix) in variants.items():
        fresh = start_node(checks[name])
        try:
            channel = f"{prefix}bench-{uuid.uuid4().hex[:8]}"
            result = burst(fresh, client, f"/ev/{channel}?{sign(KEYS, channel, 3600).query}", channel)
        finally:
            fresh.cleanup()
        summary[name]["node_kib_per_subscriber"] = result["node_kib_per_subscriber"]
    cpu_ratio = (
        summary["on signed"]["node_cpu_us_per_subscribe"] / summary["off"]["node_cpu_us_per_subscribe"]
    )
    rate_ratio = summary["on signed"]["subscribes_per_second"] / summary["off"]["subscribes_per_second"]
    public_ratio = (
        summary["on public"]["node_cpu_us_per_subscribe"] / summary["off"]["node_cpu_us_per_subscribe"]
    )
    print(f"\nsigned subscribe URLs, {SUBSCRIBERS} subscribers per burst, {ROUNDS} rounds, load {load:.1f}")
    for name, figures in summary.items():
        print(
            f"  {name:10s} {figures['subscribes_per_second']:8.0f} subscribes/s"
            f"  node {figures['node_cpu_us_per_subscribe']:6.1f} us CPU per subscribe"
            f"  {figures['node_kib_per_subscriber']:5.1f} KiB per subscriber"
        )
    verdict = "met" if cpu_ratio <= TARGET else "MISSED"
    print(f"  node CPU per subscribe, on signed / off: {cpu_ratio:.3f} (target <= {TARGET}: {verdict})")
    print(f"  node CPU per subscribe, on public / off: {public_ratio:.3f}")
    print(f"  subscribe rate, on signed / off:         {rate_ratio:.3f}")
    RESULTS.mkdir(exist_ok=True)
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_before": load,
        "subscribers": SUBSCRIBERS,
        "inflight": INFLIGHT,
        "rounds": rounds,
        "summary": summary,
        "node_cpu_ratio_signed_over_off": cpu_ratio,
        "node_cpu_ratio_public_over_off": public_ratio,
        "rate_ratio_signed_over_off": rate_ratio,
        "target": TARGET,
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"subscribe-auth-{stamp}.json", "latest-subscribe-auth.json"):
        (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
