"""`make bench`: the push node's settings, compared by measurement, so the push_stream role's
defaults and sysctl.d/60-realtime-glue.conf follow what wins.

Each variant is a node_run.py run (push_stream, BENCH_SETTINGS_SUBSCRIBERS subscribers,
BENCH_SETTINGS_BROADCASTS broadcasts of 128 or 4096 bytes, the role's sysctl values
applied in the namespaces), changing one thing:

- workers: worker_processes 1, the number of cores (the role's `auto`), twice and four
  times that; node and clients on loopback, unpinned, so the node can use every core;
- send buffers (4 KB messages; node and clients apart, and again on loopback as
  `buffers lo`): net.ipv4.tcp_wmem's default 4 KiB / 16 KiB (the role's) / 64 KiB, and
  `sndbuf=8k` on the listen socket (fixes every subscriber's buffer, no autotuning);
- sysctl (apart): a fresh namespace's kernel defaults against the role's file;
- pings: the CPU one EventSource ping costs per subscriber, measured with
  push_stream_ping_message_interval 1 s while idle, and what 10, 30 and 60 s mean for
  1,000,000 subscribers.

Every variant runs BENCH_SETTINGS_ROUNDS times, interleaved, and the median over all its
broadcasts is compared. For each group the best variant is named (workers: the least time
until the last subscriber has a broadcast; the others: the least node CPU per delivery); a
winner counts as better than the role's default only when it beat it by more than NOISE in
every round (this machine is shared and noisy).
Results: bench/results/node-settings-<time>.json and latest-node-settings.json.

Environment: BENCH_SETTINGS_SUBSCRIBERS (16000: one worker must hold them all under the
20,000 open-files cap), BENCH_SETTINGS_BROADCASTS (3), BENCH_SETTINGS_ROUNDS (2),
BENCH_SETTINGS_GROUPS (workers,buffers,buffers lo,sysctl,ping).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from node_run import PORT, RunSpec, build_programs, flavour_available, run  # noqa: E402
from testbed import Testbed, sysctl_file_values  # noqa: E402

from support.push_node import role_variables  # noqa: E402

SUBSCRIBERS = int(os.environ.get("BENCH_SETTINGS_SUBSCRIBERS", 16_000))
BROADCASTS = int(os.environ.get("BENCH_SETTINGS_BROADCASTS", 3))
ROUNDS = int(os.environ.get("BENCH_SETTINGS_ROUNDS", 2))
GROUPS = [
    g
    for g in os.environ.get("BENCH_SETTINGS_GROUPS", "workers,buffers,buffers lo,sysctl,ping").split(",")
    if g
]
SYSCTL_FILE = REPO / "sysctl.d" / "60-realtime-glue.conf"
RESULTS = BENCH / "results"
NOISE = 0.15  # a variant must beat the role's default by more than this to count
# What decides a group: workers spread a broadcast over the cores (time until the last
# subscriber has it); the rest by the node's CPU per delivery.
METRIC = {"workers": "last_ms"}
PING_PROBE_SECONDS = 1
PING_IDLE_SECONDS = 6.0
PROJECTED_SUBSCRIBERS = 1_000_000
CORES = os.cpu_count() or 1


def variants(role_sysctl: dict[str, str]) -> list[dict]:
    """Every variant: its group, name, placement, sysctl values, nginx settings."""
    wmem_default = role_sysctl["net.ipv4.tcp_wmem"].split()
    out = []
    for workers in sorted({1, CORES, 2 * CORES, 4 * CORES}):
        out.append(
            {
                "group": "workers",
                "name": f"{workers}" + (" (auto)" if workers == CORES else ""),
                "chosen": workers == CORES and role_variables()["push_stream_worker_processes"] == "auto",
                "placement": "loopback",
                "workers": workers,
                "message_bytes": 128,
            }
        )
    # Apart and on loopback: the apart placement charges the node for every packet sent to
    # the clients' CPU (a cross-CPU interrupt, a VM exit here), which buffer sizes can change.
    for group, placement in (("buffers", "apart"), ("buffers lo", "loopback")):
        for default in (4096, int(wmem_default[1]), 65536):
            out.append(
                {
                    "group": group,
                    "name": f"tcp_wmem default {default // 1024} KiB",
                    "chosen": default == int(wmem_default[1]),
                    "placement": placement,
                    "sysctl": {"net.ipv4.tcp_wmem": f"{wmem_default[0]} {default} {wmem_default[2]}"},
                    "message_bytes": 4096,
                }
            )
        out.append(
            {
                "group": group,
                "name": "listen sndbuf=8k",
                "chosen": False,
                "placement": placement,
                "settings": {"push_stream_listen": [f"{PORT} reuseport sndbuf=8k"]},
                "message_bytes": 4096,
            }
        )
    for name, chosen in (("kernel defaults", False), ("sysctl.d/60-realtime-glue.conf", True)):
        out.append(
            {
                "group": "sysctl",
                "name": name,
                "chosen": chosen,
                "placement": "apart",
                "role_sysctl": chosen,
                "message_bytes": 128,
            }
        )
    return out


def measure_variant(variant: dict, role_sysctl: dict, programs: dict) -> dict:
    values = dict(role_sysctl) if variant.get("role_sysctl", True) else {}
    values.update(variant.get("sysctl", {}))
    spec = RunSpec(
        "push_stream",
        SUBSCRIBERS,
        message_sizes=(variant["message_bytes"],),
        broadcasts=BROADCASTS,
        workers=variant.get("workers", CORES),
        settings=variant.get("settings", {}),
        label=f"{variant['group']}: {variant['name']}",
    )
    load = os.getloadavg()[0]
    with Testbed(variant["placement"], clients=4, sysctl_values=values) as bed:
        return {**run(bed, spec, programs), "load_average_before": load}


def combine(variant: dict, runs: list[dict]) -> dict:
    """The median over every broadcast of every round."""

    def median(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    broadcasts = [b for r in runs for b in r["broadcasts"] if b["receivers"]]
    return {
        **{
            k: v for k, v in variant.items() if k in ("group", "name", "chosen", "placement", "message_bytes")
        },
        "node_cpu_per_delivery_us": median(b["node_cpu_per_delivery_us"] for b in broadcasts),
        "p99_ms": median(b["p99_ms"] for b in broadcasts),
        "last_ms": median(b["last_ms"] for b in broadcasts),
        "connects_per_second": median(r["connects_per_second"] for r in runs),
        "listen_drops": sum(r["listen_drops_while_connecting"].get("ListenDrops", 0) for r in runs),
        "subscribers_held": min(r["subscribers_held"] for r in runs),
        "pss_per_subscriber_kb": median(r["pss_per_subscriber_kb"] for r in runs),
        "load_average": round(sum(r["load_average_before"] for r in runs) / len(runs), 1),
        "rounds": [
            {
                "cpu_per_delivery_us": [b["node_cpu_per_delivery_us"] for b in r["broadcasts"]],
                "last_ms": [b["last_ms"] for b in r["broadcasts"]],
            }
            for r in runs
        ],
    }


def measure_ping(role_sysctl: dict, programs: dict) -> dict:
    """Idle CPU with a ping every second: the cost of one ping per subscriber."""
    spec = RunSpec(
        "push_stream",
        SUBSCRIBERS,
        broadcasts=0,
        ping_seconds=PING_PROBE_SECONDS,
        idle_seconds=PING_IDLE_SECONDS,
        workers=CORES,
        label="ping",
    )
    with Testbed("apart", clients=4, sysctl_values=role_sysctl) as bed:
        result = run(bed, spec, programs)
    idle_cpu_fraction = result["node_cpu_idle_percent"] / 100
    per_ping_us = 1e6 * idle_cpu_fraction * PING_PROBE_SECONDS / max(result["subscribers_held"], 1)
    chosen = int(role_variables()["push_stream_ping_interval"])
    return {
        "probe_interval_seconds": PING_PROBE_SECONDS,
        "node_cpu_idle_percent": result["node_cpu_idle_percent"],
        "cpu_per_ping_per_subscriber_us": round(per_ping_us, 2),
        "role_interval_seconds": chosen,
        "cores_for_1m": {
            str(interval): round(per_ping_us * PROJECTED_SUBSCRIBERS / 1e6 / interval, 3)
            for interval in sorted({10, chosen, 60})
        },
    }


def verdicts(rows: list[dict]) -> dict[str, dict]:
    """Per group: the best variant by the group's metric, and whether it beat the role's
    default by more than NOISE in every round (a contended minute must not pick a default)."""
    out = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        metric = METRIC.get(group, "node_cpu_per_delivery_us")
        members = [r for r in rows if r["group"] == group and r[metric] is not None]
        best = min(members, key=lambda r: r[metric])
        chosen = next((r for r in members if r["chosen"]), None)
        better = (
            chosen is not None
            and best is not chosen
            and all(
                b < (1 - NOISE) * c
                for b, c in zip(round_medians(best, metric), round_medians(chosen, metric), strict=True)
            )
        )
        out[group] = {
            "metric": metric,
            "best": best["name"],
            "role_default": chosen["name"] if chosen else None,
            "role_default_beaten": better,
        }
    return out


def round_medians(row: dict, metric: str) -> list[float]:
    key = {"node_cpu_per_delivery_us": "cpu_per_delivery_us", "last_ms": "last_ms"}[metric]
    out = []
    for round_ in row["rounds"]:
        values = sorted(v for v in round_[key] if v is not None)
        out.append(values[len(values) // 2] if values else float("inf"))
    return out


def print_report(results: dict) -> None:
    load = " ".join(f"{x:.1f}" for x in results["load_average_before"])
    print(
        f"\nnode settings: push_stream, {results['subscribers']:,} subscribers, median of"
        f" {results['broadcasts']} broadcasts ({CORES} cpus, load before {load})"
    )
    print(
        f"  {'group':<10} {'variant':<32} {'place':<8} {'msg':>5} {'CPU/delivery':>12} {'p99 ms':>7}"
        f" {'last ms':>7} {'connects/s':>10} {'drops':>6} {'load':>5}"
    )
    for r in results["variants"]:
        mark = "*" if r["chosen"] else " "
        drops = r["listen_drops"]
        print(
            f" {mark}{r['group']:<10} {r['name']:<32} {r['placement']:<8} {r['message_bytes']:>5}"
            f" {r['node_cpu_per_delivery_us']:>10} us {r['p99_ms']:>7} {r['last_ms']:>7}"
            f" {r['connects_per_second']:>10,} {drops:>6} {r['load_average']:>5}"
        )
    print("  (* = the role's default; load = the machine's 1-minute load average before the runs)")
    for group, v in results["verdicts"].items():
        by = "time to the last subscriber" if v["metric"] == "last_ms" else "node CPU per delivery"
        if v["role_default_beaten"]:
            won = f"beat the role's {v['role_default']} by {NOISE:.0%}+ in every round"
            print(f"  {group}: {v['best']} {won} ({by})")
        else:
            best = f"best: {v['best']}, not {NOISE:.0%} better in every round"
            print(f"  {group}: the role's {v['role_default']} stands ({by}; {best})")
    ping = results.get("ping")
    if ping:
        cores = ", ".join(f"every {k} s: {v} cores" for k, v in ping["cores_for_1m"].items())
        print(
            f"  pings: {ping['cpu_per_ping_per_subscriber_us']} us of node CPU per subscriber per ping"
            f" (idle {ping['node_cpu_idle_percent']} % with a ping every {ping['probe_interval_seconds']} s);"
            f" for 1,000,000 subscribers {cores} (role: {ping['role_interval_seconds']} s)"
        )


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("node settings: needs root (network namespaces, cgroups, sysctl)", file=sys.stderr)
        return 1
    available, why = flavour_available("push_stream")
    if not available:  # the module comes from its Debian package (`make nginx-modules`)
        print(f"node settings: push_stream cannot be loaded here: {why}", file=sys.stderr)
        return 1
    programs = build_programs()
    role_sysctl = sysctl_file_values(SYSCTL_FILE)
    results = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "load_average_before": list(os.getloadavg()),
        "subscribers": SUBSCRIBERS,
        "broadcasts": BROADCASTS,
        "message_bytes": "128 (workers, sysctl) / 4096 (buffers)",
        "noise": NOISE,
        "variants": [],
    }
    started = time.monotonic()
    chosen = [v for v in variants(role_sysctl) if v["group"] in GROUPS]
    runs: list[list[dict]] = [[] for _ in chosen]
    for round_ in range(ROUNDS):  # interleaved, so a busy minute on the machine hits every variant
        for variant, done in zip(chosen, runs, strict=True):
            print(f"node settings: round {round_ + 1}: {variant['group']}: {variant['name']} ...", flush=True)
            done.append(measure_variant(variant, role_sysctl, programs))
    results["variants"] = [combine(v, r) for v, r in zip(chosen, runs, strict=True)]
    if "ping" in GROUPS:
        print("node settings: ping cost ...", flush=True)
        results["ping"] = measure_ping(role_sysctl, programs)
    results["verdicts"] = verdicts(results["variants"])
    results["load_average_after"] = list(os.getloadavg())
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    print_report(results)
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    path = RESULTS / f"node-settings-{results['timestamp']}.json"
    path.write_text(text)
    (RESULTS / "latest-node-settings.json").write_text(text)
    print(f"\nsaved {path.relative_to(REPO)} ({results['elapsed_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
