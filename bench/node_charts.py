"""`make bench`: the push node's figures as one picture, bench/results/node-capacity.png.

    /usr/bin/python3 bench/node_charts.py [RESULTS_DIR]

Reads latest-node-capacity.json (node_capacity.py) and, when there, latest-node-settings.json
(node_settings.py) and draws, one panel each: the node's CPU per delivery beside the
baseline's (with the ratio), the delivered bandwidth beside Disqus' 40 MB/s, what
1,000,000 subscribers need, and the settings compared. Runs on Debian's python3 with
python3-matplotlib (the project's venv has no matplotlib).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
DISQUS_MB_PER_SECOND = 40.0
COLOURS = {
    "baseline": "#4c72b0",
    "push_stream": "#dd8452",
    "push_stream without Event-ID": "#e3b87f",
    "push_stream before": "#8c613c",  # BENCH_PUSH_STREAM_BEFORE: another build of the module
}


def run_name(run: dict) -> str:
    return f"{run['label']} ({run['placement']})"


def cpu_panel(ax, capacity: dict) -> None:
    runs = capacity["runs"]
    sizes = capacity["message_sizes"]
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [
            run["by_size"].get(str(s), run["by_size"].get(s, {})).get("node_cpu_per_delivery_us", 0)
            for s in sizes
        ]
        xs = [k + i * width for k in range(len(sizes))]
        bars = ax.bar(
            xs,
            values,
            width,
            label=run_name(run),
            color=COLOURS.get(run["label"], "grey"),
            hatch="//" if run["placement"] == "loopback" else None,
            edgecolor="white",
        )
        for bar, size in zip(bars, sizes, strict=False):
            ratio = next(
                (
                    r["ratio_to_baseline"]
                    for r in capacity["ratios"]
                    if r["label"] == run["label"]
                    and r["placement"] == run["placement"]
                    and r["message_bytes"] in (size, str(size))
                ),
                None,
            )
            if ratio:
                ax.annotate(
                    f"{ratio}x",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(sizes))], [f"{s} B" for s in sizes])
    ax.set_ylabel("node CPU per delivery, µs")
    ax.set_title("1-2. Node CPU per delivery (x = ratio to the baseline; goal <= 2x)")
    ax.legend(fontsize=7)


def bandwidth_panel(ax, capacity: dict) -> None:
    sizes = capacity["message_sizes"]
    for run in capacity["runs"]:
        if run["placement"] != "apart":
            continue
        per_node = [run["by_size"].get(str(s), {}).get("mb_per_second") for s in sizes]
        per_cpu = [run["by_size"].get(str(s), {}).get("mb_per_node_cpu_second") for s in sizes]
        colour = COLOURS.get(run["label"], "grey")
        ax.plot(sizes, per_node, "o-", color=colour, label=f"{run['label']}: MB/s")
        ax.plot(sizes, per_cpu, "s--", color=colour, label=f"{run['label']}: MB per CPU-second")
    ax.axhline(DISQUS_MB_PER_SECOND, color="black", linestyle=":", label="Disqus: 40 MB/s per machine")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s} B" for s in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("MB/s (log)")
    ax.set_title("5. Delivered bandwidth, node and clients apart")
    ax.legend(fontsize=7)


def projection_panel(ax, capacity: dict) -> None:
    rows = capacity["projection"]
    names = [r["label"] for r in rows]
    process = [r["process_memory_gb"] for r in rows]
    kernel = [r["kernel_memory_gb"] for r in rows]
    ax.bar(names, process, color=[COLOURS.get(n, "grey") for n in names], label="process (PSS)")
    ax.bar(names, kernel, bottom=process, color="#bbbbbb", label="kernel (slab, one end)")
    smallest = str(min(int(s) for s in rows[0]["by_size"])) if rows and rows[0]["by_size"] else None
    for i, row in enumerate(rows):
        if smallest:
            cores = row["by_size"][smallest]["cores_at"]["1.0"]
            ax.annotate(
                f"{row['memory_gb']} GB\n{cores} cores for\n1 broadcast/s ({smallest} B)",
                (i, row["memory_gb"]),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_ylabel("GB for 1,000,000 subscribers")
    ax.set_title(f"4. What 1,000,000 subscribers need (held here: {capacity['subscribers']:,})")
    ax.margins(y=0.35)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)


def settings_panel(ax, settings: dict | None) -> None:
    if not settings:
        ax.text(0.5, 0.5, "no node_settings.py results", ha="center", va="center")
        ax.set_axis_off()
        return
    rows = settings["variants"]
    names = [f"{r['group']}: {r['name']} ({r['message_bytes']} B, {r['placement']})" for r in rows]
    values = [r["node_cpu_per_delivery_us"] for r in rows]
    colours = ["#55a868" if r.get("chosen") else "#8c8c8c" for r in rows]
    ax.barh(names, values, color=colours)
    for i, r in enumerate(rows):
        ax.annotate(f" p99 {r['p99_ms']} / last {r['last_ms']} ms", (values[i], i), va="center", fontsize=7)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(
        f"node CPU per delivery, µs ({settings['message_bytes']} B, {settings['subscribers']:,} subscribers)"
    )
    winners = [
        f"{g}: {v['best']} won" for g, v in settings.get("verdicts", {}).items() if v["role_default_beaten"]
    ]
    verdicts = "; ".join(winners) or "no variant beat the role's default in every round: the defaults stand"
    load = " ".join(f"{x:.1f}" for x in settings["load_average_before"])
    ax.set_title(f"3. Settings compared (green: the role's default; load {load})\n{verdicts}", fontsize=9)
    ax.margins(x=0.3)


def draw(results: Path = RESULTS) -> Path:
    capacity = json.loads((results / "latest-node-capacity.json").read_text())
    settings_path = results / "latest-node-settings.json"
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else None
    figure, axes = plt.subplots(2, 2, figsize=(15, 10))
    cpu_panel(axes[0][0], capacity)
    bandwidth_panel(axes[0][1], capacity)
    projection_panel(axes[1][0], capacity)
    settings_panel(axes[1][1], settings)
    load = " ".join(f"{x:.1f}" for x in capacity["load_average_before"])
    figure.suptitle(
        f"One push node, {capacity['subscribers']:,} EventSource subscribers,"
        f" {capacity['machine']['cpus']} cores"
        f" (load {load}; {capacity['timestamp']})"
    )
    figure.tight_layout()
    path = results / "node-capacity.png"
    figure.savefig(path, dpi=80)
    return path


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS))
