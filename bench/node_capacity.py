"""`make bench`, the push node: what one node costs per delivery, measured against the least
a node can do, with the clients' CPU kept off the node's account; how many subscribers it
holds, what a million need, and the bandwidth it delivers.

In one run, for each placement (testbed.py: `apart` = node and clients in their own
network namespaces over a veth pair, node pinned to CPU 0 and clients to CPU 1, node CPU
from its own cgroup; `loopback` = one namespace, unpinned, as this bench ran before) and
for each node (`push_stream`: nginx rendered from nginx/push-stream.conf with the role's
defaults; `baseline`: bench/fanout_baseline.c, same requests, same bytes, one write per
subscriber), with the role's sysctl.d/60-realtime-glue.conf applied (namespaced keys in
the namespaces only; the host's global keys put back afterwards):

  BENCH_SUBSCRIBERS subscribers connect and are held (node_run.py), then
  BENCH_BROADCASTS broadcasts of each of BENCH_MESSAGE_SIZES, each published once every
  subscriber has the previous one, with an Event-ID header as the glue sends it.

Printed, as ratios measured in the same run:
  1. node CPU per delivery / the baseline's (goal <= 2x), per message size and placement;
  2. apart / loopback;
  4. subscribers held and memory per subscriber (nginx PSS growth; goal <= 10 KB), and what
     1,000,000 subscribers need (memory; cores for N broadcasts/s);
  5. delivered MB/s per node and per CPU-second at each size, beside Disqus' 40 MB/s.
A missed goal is printed, not failed. Results: bench/results/node-capacity-<time>.json and
latest-node-capacity.json; node_charts.py draws them (bench/results/node-capacity.png).

Environment: BENCH_SUBSCRIBERS (250000), BENCH_NODES (push_stream,baseline; nchan too),
BENCH_PLACEMENTS (apart,loopback), BENCH_MESSAGE_SIZES (128,1024,4096), BENCH_BROADCASTS (3),
BENCH_WITHOUT_EVENT_ID (1: also push_stream, apart, publishing without Event-ID: what its
separate id chunk costs), BENCH_PUSH_STREAM_BEFORE (a module file, or a
libnginx-mod-http-push-stream .deb, of another build, e.g. the package before a patch:
also run as `push_stream before`, next to the installed module in each placement, so
before and after are measured in one run at the same load; it runs right after the
installed one, or right before it with BENCH_PUSH_STREAM_BEFORE_FIRST=1).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from node_run import (  # noqa: E402
    RunSpec,
    build_programs,
    flavour_available,
    module_file,
    processes_for,
    run,
    summary_by_size,
)
from testbed import Testbed, sysctl_file_values  # noqa: E402

SUBSCRIBERS = int(os.environ.get("BENCH_SUBSCRIBERS", 250_000))
NODES = [n for n in os.environ.get("BENCH_NODES", "push_stream,baseline").split(",") if n]
PLACEMENTS = [p for p in os.environ.get("BENCH_PLACEMENTS", "apart,loopback").split(",") if p]
MESSAGE_SIZES = tuple(int(s) for s in os.environ.get("BENCH_MESSAGE_SIZES", "128,1024,4096").split(","))
BROADCASTS = int(os.environ.get("BENCH_BROADCASTS", 3))
SYSCTL_FILE = REPO / "sysctl.d" / "60-realtime-glue.conf"
RESULTS = BENCH / "results"
GOALS = {"cpu_ratio_to_baseline": 2.0, "memory_per_subscriber_kb": 10.0, "subscribers_held": 250_000}
DISQUS_MB_PER_SECOND = 40.0  # per machine, ~950,000 subscribers, under 15 % CPU
PROJECTED_SUBSCRIBERS = 1_000_000
PROJECTED_RATES = (0.1, 1.0, 10.0)  # broadcasts per second to every subscriber
WITHOUT_EVENT_ID = os.environ.get("BENCH_WITHOUT_EVENT_ID", "1") == "1"
NO_ID_LABEL = "push_stream without Event-ID"
BEFORE = os.environ.get("BENCH_PUSH_STREAM_BEFORE", "")
BEFORE_LABEL = "push_stream before"
BEFORE_FIRST = os.environ.get("BENCH_PUSH_STREAM_BEFORE_FIRST", "0") == "1"
SHORT = {
    "push_stream": "push_stream",
    "baseline": "baseline",
    NO_ID_LABEL: "ps no-id",
    BEFORE_LABEL: "ps before",
}
INSTALLED_MODULE = Path("/usr/lib/nginx/modules/ngx_http_push_stream_module.so")
MODULE_PACKAGE = "libnginx-mod-http-push-stream"


def module_identity(path: Path, version_command: list[str] | None) -> dict:
    """Which build a run loaded: the file, its sha256 and its package's version."""
    version = ""
    if version_command:
        version = subprocess.run(version_command, capture_output=True, text=True).stdout.strip()
    return {
        "file": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "package_version": version or None,
    }


def measure() -> dict:
    programs = build_programs()
    notes = []
    nodes = list(NODES)
    missing = []
    for flavour in [n for n in nodes if n != "baseline"]:
        available, why = flavour_available(flavour)
        if not available:
            missing.append(f"{flavour}: {why}")
    before_settings = None
    if BEFORE and "push_stream" in nodes:
        given = Path(BEFORE).resolve()
        before_module = module_file(given)
        before_settings = {"push_stream_module_path": str(before_module)}
        available, why = flavour_available("push_stream", before_settings)
        if not available:
            missing.append(f"BENCH_PUSH_STREAM_BEFORE={BEFORE}: {why}")
    if missing:  # the modules come from their Debian packages (`make nginx-modules`)
        raise SystemExit("node capacity: " + "; ".join(missing))
    modules = {}
    if "push_stream" in nodes:
        installed = ["dpkg-query", "-W", "-f", "${Version}", MODULE_PACKAGE]
        modules["push_stream"] = module_identity(INSTALLED_MODULE, installed)
    if before_settings:
        from_deb = ["dpkg-deb", "--field", str(given), "Version"] if given.suffix == ".deb" else None
        modules[BEFORE_LABEL] = module_identity(before_module, from_deb)
        if modules[BEFORE_LABEL]["sha256"] == modules["push_stream"]["sha256"]:
            notes.append(f"{BEFORE_LABEL} is the same file as the installed module")
    processes = processes_for(SUBSCRIBERS)
    notes.append(
        f"{processes} node workers (nginx: worker_processes {processes}, reuseport; baseline: as many"
        f" processes) and {processes} client processes: none above 12,500 sockets (20,000 open files cap)"
    )
    notes.append(
        "pings off during the run (ping cost: node_settings.py); publishes carry Event-ID as the glue's do"
    )
    notes.append("TCP segments are counted in the node's namespace: on loopback both ends' segments")
    results = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "load_average_before": list(os.getloadavg()),
        "subscribers": SUBSCRIBERS,
        "message_sizes": list(MESSAGE_SIZES),
        "broadcasts_per_size": BROADCASTS,
        "goals": GOALS,
        "notes": notes,
        "modules": modules,
        "before_first": BEFORE_FIRST if before_settings else None,
        "runs": [],
    }
    role_values = sysctl_file_values(SYSCTL_FILE)
    started = time.monotonic()
    for placement in PLACEMENTS:
        if placement == "apart" and (os.cpu_count() or 1) < 2:
            notes.append("placement apart left out: it needs two CPUs")
            continue
        with Testbed(placement, clients=processes, sysctl_values=role_values) as bed:
            results.setdefault("sysctl", {})[placement] = {
                "applied": bed.sysctl_applied,
                "skipped": bed.sysctl_skipped,
                "host_values_restored": bed.host_values_changed,
            }
            for kind in nodes:
                specs = [RunSpec(kind, SUBSCRIBERS, message_sizes=MESSAGE_SIZES, broadcasts=BROADCASTS)]
                if kind == "push_stream" and before_settings:
                    # Next to the installed module: the same load, as far as one can tell.
                    before = RunSpec(
                        "push_stream", SUBSCRIBERS, message_sizes=MESSAGE_SIZES, broadcasts=BROADCASTS,
                        settings=before_settings, label=BEFORE_LABEL,
                    )  # fmt: skip
                    specs = [before, *specs] if BEFORE_FIRST else [*specs, before]
                for spec in specs:
                    print(
                        f"node capacity: {spec.label or kind}, {placement}: {SUBSCRIBERS:,} subscribers ...",
                        flush=True,
                    )
                    results["runs"].append(measured(bed, spec, programs))
            if placement == "apart" and "push_stream" in nodes and WITHOUT_EVENT_ID:
                # What push-stream's separate id chunk costs (one writev more per subscriber).
                print(f"node capacity: push_stream without Event-ID, {placement} ...", flush=True)
                spec = RunSpec(
                    "push_stream", SUBSCRIBERS, message_sizes=MESSAGE_SIZES, broadcasts=BROADCASTS,
                    event_id=False, label=NO_ID_LABEL,
                )  # fmt: skip
                results["runs"].append(measured(bed, spec, programs))
    results["load_average_after"] = list(os.getloadavg())
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    results["ratios"] = ratios(results["runs"])
    results["projection"] = projection(results["runs"])
    return results


def measured(bed: Testbed, spec: RunSpec, programs: dict) -> dict:
    result = run(bed, spec, programs)
    result["by_size"] = summary_by_size(result)
    return result


def find(runs: list[dict], label: str, placement: str) -> dict | None:
    return next((r for r in runs if r["label"] == label and r["placement"] == placement), None)


def ratios(runs: list[dict]) -> list[dict]:
    """Node CPU per delivery over the baseline's, per placement and size; and apart over
    loopback for each node."""
    out = []
    for r in runs:
        if r["kind"] == "baseline":
            continue
        base = find(runs, "baseline", r["placement"])  # the baseline always writes the id
        loop = find(runs, r["label"], "loopback") if r["placement"] == "apart" else None
        for size, s in r["by_size"].items():
            row = {"label": r["label"], "placement": r["placement"], "message_bytes": size}
            row["node_cpu_per_delivery_us"] = s["node_cpu_per_delivery_us"]
            if base and size in base["by_size"]:
                b = base["by_size"][size]["node_cpu_per_delivery_us"]
                row["baseline_cpu_per_delivery_us"] = b
                row["ratio_to_baseline"] = round(s["node_cpu_per_delivery_us"] / b, 2) if b else None
                row["goal_met"] = row["ratio_to_baseline"] is not None and row["ratio_to_baseline"] <= 2.0
            if loop and size in loop["by_size"]:
                row["apart_over_loopback"] = round(
                    s["node_cpu_per_delivery_us"] / loop["by_size"][size]["node_cpu_per_delivery_us"], 2
                )
            before = find(runs, BEFORE_LABEL, r["placement"]) if r["label"] == "push_stream" else None
            if before and size in before["by_size"]:
                row["over_before"] = round(
                    s["node_cpu_per_delivery_us"] / before["by_size"][size]["node_cpu_per_delivery_us"], 2
                )
            out.append(row)
    return out


def projection(runs: list[dict]) -> list[dict]:
    """What 1,000,000 subscribers need, from each node's measured memory and CPU (apart)."""
    out = []
    for r in runs:
        if r["placement"] != "apart" and find(runs, r["label"], "apart"):
            continue
        memory_kb = r["pss_per_subscriber_kb"] + r["kernel_slab_per_subscriber_kb"]
        row = {
            "label": r["label"],
            "from_placement": r["placement"],
            "subscribers": PROJECTED_SUBSCRIBERS,
            "process_memory_gb": round(r["pss_per_subscriber_kb"] * PROJECTED_SUBSCRIBERS / 1e6, 2),
            "kernel_memory_gb": round(r["kernel_slab_per_subscriber_kb"] * PROJECTED_SUBSCRIBERS / 1e6, 2),
            "memory_gb": round(memory_kb * PROJECTED_SUBSCRIBERS / 1e6, 2),
            "by_size": {},
        }
        for size, s in r["by_size"].items():
            per_broadcast = s["node_cpu_per_delivery_us"] * PROJECTED_SUBSCRIBERS / 1e6  # CPU-seconds
            row["by_size"][size] = {
                "cpu_seconds_per_broadcast": round(per_broadcast, 2),
                "cores_at": {str(rate): round(rate * per_broadcast, 2) for rate in PROJECTED_RATES},
                "broadcasts_per_second_per_core": round(1 / per_broadcast, 3) if per_broadcast else None,
                "mb_per_second_at_1_per_second": round(s["frame_bytes"] * PROJECTED_SUBSCRIBERS / 1e6, 1),
            }
        out.append(row)
    return out


# --- report ---------------------------------------------------------------------------


def print_report(results: dict) -> None:
    runs = results["runs"]
    load = " ".join(f"{x:.1f}" for x in results["load_average_before"])
    print(
        f"\nnode capacity: one push node, {results['subscribers']:,} EventSource subscribers"
        f" ({results['machine']['cpus']} cpus; load before {load}, after"
        f" {' '.join(f'{x:.1f}' for x in results['load_average_after'])})"
    )
    for note in results["notes"]:
        print(f"  note: {note}")
    for label, module in results.get("modules", {}).items():
        print(
            f"  module: {label}: {module['package_version']}"
            f" ({module['file']}, sha256 {module['sha256'][:12]})"
        )
    heads = [f"{SHORT.get(r['label'], r['label'])}/{r['placement']}" for r in runs]
    col = max(16, *(len(h) for h in heads))
    rows = [
        ("subscribers held (node's count)", lambda r: f"{r['subscribers_held']:,}"),
        ("  connected / failed", lambda r: f"{r['subscribers_connected']:,}/{r['subscribers_failed']:,}"),
        ("  connects/s", lambda r: f"{r['connects_per_second']:,}"),
        ("  node CPU per connect, us", lambda r: f"{r['node_cpu_per_connect_us']}"),
        ("  node CPU idle, holding, %", lambda r: f"{r['node_cpu_idle_percent']}"),
        ("node PSS per subscriber, KB", lambda r: f"{r['pss_per_subscriber_kb']}"),
        ("kernel slab per subscriber, KB", lambda r: f"{r['kernel_slab_per_subscriber_kb']}"),
        ("CPU account", lambda r: r["cpu_account"].replace("cgroup ", "")),
    ]
    print(f"\n  {'':<34}" + "".join(f"  {h:>{col}}" for h in heads))
    for label, value in rows:
        print(f"  {label:<34}" + "".join(f"  {value(r):>{col}}" for r in runs))
    for size in results["message_sizes"]:
        print(f"  -- {size}-byte messages (median of {results['broadcasts_per_size']} broadcasts)")
        for label, key in (
            ("  node CPU per delivery, us", "node_cpu_per_delivery_us"),
            ("  node CPU per broadcast, ms", "node_cpu_per_broadcast_ms"),
            ("  p50 / p99 / last, ms", None),
            ("  delivered MB/s", "mb_per_second"),
            ("  delivered MB per node CPU-s", "mb_per_node_cpu_second"),
            ("  TCP segments out / in per delivery", "segments"),
        ):
            cells = []
            for r in runs:
                s = r["by_size"].get(size)
                if s is None:
                    cells.append("-")
                elif key is None:
                    cells.append(f"{s['p50_ms']:.0f}/{s['p99_ms']:.0f}/{s['last_ms']:.0f}")
                elif key == "segments":
                    cells.append(f"{s['segments_out_per_delivery']} / {s['segments_in_per_delivery']}")
                else:
                    cells.append(str(s[key]))
            print(f"  {label:<34}" + "".join(f"  {c:>{col}}" for c in cells))

    print("\n1. node CPU per delivery / the baseline's, same placement, same run (goal <= 2x):")
    for row in results["ratios"]:
        if "ratio_to_baseline" in row:
            verdict = "met" if row["goal_met"] else "MISSED"
            extra = f"; apart/loopback {row['apart_over_loopback']}x" if "apart_over_loopback" in row else ""
            if "over_before" in row:
                extra += f"; / {BEFORE_LABEL} {row['over_before']}x"
            print(
                f"  {row['label']:<27} {row['placement']:<9} {row['message_bytes']:>5} B:"
                f" {row['node_cpu_per_delivery_us']:>7} us / {row['baseline_cpu_per_delivery_us']:>6} us"
                f" = {row['ratio_to_baseline']:>5}x  {verdict}{extra}"
            )

    print(f"\n4. subscribers held and memory (goal: {GOALS['subscribers_held']:,} held, <= 10 KB each):")
    for r in runs:
        if results["subscribers"] < GOALS["subscribers_held"]:
            held = "not tried (BENCH_SUBSCRIBERS below the goal)"
        else:
            held = "met" if r["subscribers_held"] >= GOALS["subscribers_held"] else "MISSED"
        memory_ok = r["pss_per_subscriber_kb"] <= GOALS["memory_per_subscriber_kb"]
        print(
            f"  {r['label']:<27} {r['placement']:<9} held {r['subscribers_held']:>9,}"
            f" {held}; {r['pss_per_subscriber_kb']} KB each"
            f" {'met' if memory_ok else 'MISSED'} (+ {r['kernel_slab_per_subscriber_kb']} KB in the kernel)"
        )
    print(f"  what {PROJECTED_SUBSCRIBERS:,} subscribers need (measured per subscriber x 1,000,000):")
    for p in results["projection"]:
        print(
            f"    {p['label']:<27} memory {p['memory_gb']} GB ({p['process_memory_gb']} process +"
            f" {p['kernel_memory_gb']} kernel)"
        )
        for size, s in p["by_size"].items():
            cores = ", ".join(f"{rate}/s: {c} cores" for rate, c in s["cores_at"].items())
            print(
                f"      {size:>5} B: {s['cpu_seconds_per_broadcast']} CPU-s per broadcast; {cores};"
                f" one core: {s['broadcasts_per_second_per_core']} broadcasts/s"
            )

    print(f"\n5. delivered bandwidth (apart; Disqus: {DISQUS_MB_PER_SECOND:.0f} MB/s per machine):")
    for r in runs:
        if r["placement"] != "apart":
            continue
        parts = [
            f"{size} B {s['mb_per_second']} MB/s ({s['mb_per_node_cpu_second']} per CPU-s)"
            for size, s in r["by_size"].items()
        ]
        print(f"  {r['label']:<27} " + "; ".join(parts))


def save(results: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    path = RESULTS / f"node-capacity-{results['timestamp']}.json"
    path.write_text(text)
    (RESULTS / "latest-node-capacity.json").write_text(text)
    return path


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("node capacity: needs root (network namespaces, cgroups, sysctl)", file=sys.stderr)
        return 1
    results = measure()
    print_report(results)
    print(f"\nsaved {save(results).relative_to(REPO)} ({results['elapsed_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
