"""`make bench`, part 2: how many EventSource subscribers one push node holds, and how fast it
broadcasts to all of them.

One nginx push node on loopback (rendered from nginx/push-stream.conf with the role's
defaults; several workers, each under this machine's 20,000 open-files cap, listening with
`reuseport` so the kernel spreads the subscribers evenly over them) holds N subscribers on
one channel: GET /ev/bench over HTTP/1.1, kept open, from several client processes
(bench/ev_client.c, epoll, compiled here with gcc), each from its own loopback source
address (127.0.0.2, .3, ...) so no source address runs out of ports. Then it broadcasts
BENCH_BROADCASTS messages BENCH_BROADCAST_INTERVAL seconds apart, each carrying its publish time.

Reported for each run: subscribers held (the node's own count), memory per subscriber
(nginx RSS and PSS summed over master and workers, minus the idle node's; the shared
memory zone's resident pages; for nchan its stub status' "shared memory used"), the
publish -> receive delay across subscribers (p50, p99, time until the last one has it),
bytes/s delivered to the subscribers, and nginx CPU (utime + stime from /proc).

Runs: {push_stream, nchan} x {the host's sysctl values, the role's
sysctl.d/60-realtime-glue.conf applied with `sysctl -w` for the run and restored
afterwards}. push_stream only when `make push-stream-module` has built the module for the
installed nginx; nchan only otherwise, and it says so.

Targets (this 2-core machine): 100,000 subscribers on one node, p99 delivery <= 1 s,
<= 10 KB per subscriber. A measurement, not a test: a missed target is printed, errors fail.
Results: bench/results/node-capacity-<timestamp>.json and latest-node-capacity.json.

Environment: BENCH_SUBSCRIBERS (100000), BENCH_BROADCASTS (4), BENCH_BROADCAST_INTERVAL (2.5),
BENCH_MESSAGE_BYTES (128), BENCH_CAPACITY_FLAVOURS (push_stream,nchan), BENCH_CAPACITY_PROFILES (host,role).
"""

from __future__ import annotations

import json
import math
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

from support.ports import free_port  # noqa: E402
from support.push_node import BUILT_MODULE, PushNode, role_variables  # noqa: E402

SUBSCRIBERS = int(os.environ.get("BENCH_SUBSCRIBERS", 100_000))
BROADCASTS = int(os.environ.get("BENCH_BROADCASTS", 4))
# Apart enough that one broadcast is delivered before the next (each is measured alone).
BROADCAST_INTERVAL = float(os.environ.get("BENCH_BROADCAST_INTERVAL", 2.5))
MESSAGE_BYTES = int(os.environ.get("BENCH_MESSAGE_BYTES", 128))
FLAVOURS = os.environ.get("BENCH_CAPACITY_FLAVOURS", "push_stream,nchan").split(",")
PROFILES = os.environ.get("BENCH_CAPACITY_PROFILES", "host,role").split(",")
SYSCTL_FILE = REPO / "sysctl.d" / "60-realtime-glue.conf"
CLIENT_SOURCE = BENCH / "ev_client.c"
CLIENT_BINARY = REPO / "build" / "bench" / "ev_client"
CHANNEL = "bench"
NODE_HOST = "127.0.0.1"
PER_PROCESS_SOCKETS = 12_500  # under the 20,000 open-files cap, with room to spare
MIN_PROCESSES = 8
RLIMIT_NOFILE = 19_000
INFLIGHT_CONNECTS = 256  # per client process
CONNECT_TIMEOUT = 120.0
DELIVERY_TIMEOUT = 10.0
TARGETS = {"subscribers_held": 100_000, "delivery_p99_ms": 1000.0, "memory_per_subscriber_kb": 10.0}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- /proc ------------------------------------------------------------------------


def process_tree(master: int) -> list[int]:
    """The nginx master and its workers."""
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def memory_kib(pids: list[int]) -> dict:
    """RSS, PSS (shared pages divided among the processes that map them) and anonymous
    RSS, summed; `shm_kib`: the shared memory zones' resident pages (the most any one
    process maps, a lower bound for what the zone uses)."""
    rss = pss = anon = shm = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon += int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
        shm = max(shm, _shared_zone_rss(pid))
    return {"rss_kib": rss, "pss_kib": pss, "anon_kib": anon, "shm_kib": shm}


def _shared_zone_rss(pid: int) -> int:
    total, in_zone = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(None, 1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping's header line
            in_zone = line.rstrip().endswith("/dev/zero (deleted)")
        elif in_zone and first == "Rss:":
            total += int(line.split()[1])
    return total


def kernel_tcp_kib() -> int:
    """Memory the kernel holds for all TCP sockets (both ends on loopback)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            words = line.split()
            return int(words[words.index("mem") + 1]) * PAGE // 1024
    return 0


CONNTRACK = Path("/proc/sys/net/netfilter")


def conntrack() -> tuple[int, int] | None:
    """(entries, table size) of the firewall's connection tracking, when loaded."""
    try:
        count = int((CONNTRACK / "nf_conntrack_count").read_text())
        return count, int((CONNTRACK / "nf_conntrack_max").read_text())
    except OSError:
        return None


def wait_for_conntrack_room(needed: int, timeout: float = 150.0) -> float:
    """Connection tracking (loaded here by docker's firewall) tracks loopback too, and
    a full table drops new connections: wait until `needed` entries fit (closed
    connections leave it within seconds to two minutes). Returns the seconds waited."""
    started = time.monotonic()
    while (state := conntrack()) and state[0] + needed > state[1]:
        if time.monotonic() - started > timeout:
            print(f"  connection tracking: {state[0]:,} of {state[1]:,} entries in use, going on", flush=True)
            break
        time.sleep(1)
    return time.monotonic() - started


LISTEN_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies")


def listen_counters() -> dict[str, int]:
    """The kernel's counters of connection attempts a listener dropped (TcpExt)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names[0] == "TcpExt:":
            counters = dict(zip(names[1:], (int(v) for v in values[1:]), strict=False))
            return {name: counters.get(name, 0) for name in LISTEN_COUNTERS}
    return {}


def percentile(ordered: list[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


# --- sysctl ---------------------------------------------------------------------------


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctl(key: str) -> str:
    return " ".join(sysctl_path(key).read_text().split())


def role_sysctl_values() -> dict[str, str]:
    values = {}
    for line in SYSCTL_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(value.split())
    return values


class RoleSysctl:
    """Applies the role's sysctl values for the duration of a `with` block and puts the
    previous values back; keys the kernel refuses are skipped and listed."""

    def __init__(self):
        self.values = role_sysctl_values()
        self.previous: dict[str, str] = {}
        self.applied: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def __enter__(self) -> RoleSysctl:
        for key, value in self.values.items():
            try:
                self.previous[key] = read_sysctl(key)
            except OSError as error:
                self.skipped[key] = f"unreadable: {error.strerror}"
                continue
            error = self._write(key, value)
            if error:
                self.skipped[key] = error
            else:
                self.applied[key] = value
        return self

    def __exit__(self, *exc) -> None:
        failed = []
        for key in reversed(list(self.applied)):
            if self._write(key, self.previous[key]):
                failed.append(key)
        if failed:
            print(f"node capacity: WARNING: could not restore sysctl {', '.join(failed)}", file=sys.stderr)

    @staticmethod
    def _write(key: str, value: str) -> str:
        done = subprocess.run(["sysctl", "-q", "-w", f"{key}={value}"], capture_output=True, text=True)
        return "" if done.returncode == 0 else (done.stderr.strip() or f"sysctl exit {done.returncode}")


# --- the subscriber client ------------------------------------------------------------


def build_client() -> Path:
    CLIENT_BINARY.parent.mkdir(parents=True, exist_ok=True)
    if not CLIENT_BINARY.exists() or CLIENT_BINARY.stat().st_mtime < CLIENT_SOURCE.stat().st_mtime:
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(CLIENT_BINARY), str(CLIENT_SOURCE)],
            check=True,
        )
    return CLIENT_BINARY


class Client:
    """One ev_client process: `count` subscribers from loopback address `source`."""

    def __init__(self, source: str, port: int, count: int):
        self.source = source
        self.count = count
        self.process = subprocess.Popen(
            [
                str(CLIENT_BINARY),
                NODE_HOST,
                str(port),
                source,
                str(count),
                f"/ev/{CHANNEL}",
                str(INFLIGHT_CONNECTS),
                str(BROADCASTS),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.ready: tuple[int, int, str] | None = None
        self.result: dict | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _next_line(self, deadline: float) -> str | None:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line == "":
            raise RuntimeError(f"ev_client {self.source} exited ({self.process.wait()})")
        return line

    def wait_ready(self, deadline: float) -> bool:
        while self.ready is None:
            line = self._next_line(deadline)
            if line is None:
                return False
            if line.startswith("ready "):
                _, ok, failed, error = line.split(maxsplit=3)
                self.ready = (int(ok), int(failed), error.strip())
        return True

    def send(self, command: str) -> None:
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def wait_result(self, deadline: float) -> bool:
        """Reads the report (printed when every subscriber has every message)."""
        partial: dict = {"bytes": 0, "closed": 0, "latencies_us": {}}
        while self.result is None:
            line = self._next_line(deadline)
            if line is None:
                return False
            words = line.split()
            if words[0] in ("bytes", "closed"):
                partial[words[0]] = int(words[1])
            elif words[0] == "lat":
                partial["latencies_us"][int(words[1])] = [int(v) for v in words[3:]]
            elif words[0] == "end":
                self.result = partial
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.send("quit")
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdin.close()


# --- one run ---------------------------------------------------------------------------


def plan(subscribers: int) -> tuple[int, int]:
    """(nginx workers, client processes): enough that none holds more than 12,500 sockets."""
    processes = max(MIN_PROCESSES, math.ceil(subscribers / PER_PROCESS_SOCKETS))
    if processes > 250:
        raise SystemExit(f"BENCH_SUBSCRIBERS={subscribers}: more than 250 loopback source addresses")
    return processes, processes


def node_overrides(port: int, workers: int) -> dict:
    role = role_variables()
    return {
        "push_stream_worker_processes": workers,
        "push_stream_worker_connections": RLIMIT_NOFILE,
        "push_stream_worker_rlimit_nofile": RLIMIT_NOFILE,
        # One listening socket per worker: the kernel spreads connections evenly.
        "push_stream_listen": [f"{NODE_HOST}:{port} reuseport"],
        "push_stream_listen_backlog": role["push_stream_listen_backlog"],
        "push_stream_shared_memory_size": role["push_stream_shared_memory_size"],
        "push_stream_ping_interval": role["push_stream_ping_interval"],
        "push_stream_access_log": "off",
    }


def nchan_status(node: PushNode) -> dict[str, str]:
    """nchan_stub_status (nchan's /channels-stats): "subscribers: 3000", "shared memory used: 16K"..."""
    status, _, body = node.request("GET", "/channels-stats", listener="cluster")
    if status != 200:
        raise RuntimeError(f"/channels-stats: HTTP {status}")
    return dict(line.split(": ", 1) for line in body.decode().splitlines() if ": " in line)


def subscribers_held(node: PushNode) -> int:
    """The node's own count. nchan's per-channel count only sees one worker's
    subscribers; its stub status counts them all (this node has one channel)."""
    if node.flavour == "nchan":
        return int(nchan_status(node)["subscribers"])
    return node.subscribers(CHANNEL)


def run(flavour: str, profile: str) -> dict:
    workers, processes = plan(SUBSCRIBERS)
    port = free_port(NODE_HOST)
    node = PushNode(flavour, overrides=node_overrides(port, workers), host=NODE_HOST, port=port)
    node.overrides["push_stream_error_log"] = f"{node.directory / 'error.log'} warn"
    clients: list[Client] = []
    print(f"node capacity: {flavour}, {profile} sysctl: {SUBSCRIBERS} subscribers ...", flush=True)
    try:
        waited = wait_for_conntrack_room(int(SUBSCRIBERS * 1.05))
        tracking = conntrack()
        node.start()
        pids = process_tree(node.pid)
        idle = memory_kib(pids)
        kernel_before = kernel_tcp_kib()
        cpu_start = cpu_seconds(pids)
        drops_before = listen_counters()
        started = time.monotonic()
        per_client = math.ceil(SUBSCRIBERS / processes)
        remaining = SUBSCRIBERS
        for i in range(processes):
            count = min(per_client, remaining)
            remaining -= count
            if count:
                clients.append(Client(f"127.0.0.{2 + i}", port, count))
        deadline = started + CONNECT_TIMEOUT
        for client in clients:
            if not client.wait_ready(deadline):
                waiting = [c.source for c in clients if c.ready is None]
                raise RuntimeError(
                    f"subscribers not connected within {CONNECT_TIMEOUT:.0f} s (clients {', '.join(waiting)};"
                    f" the node counts {subscribers_held(node)}; connection tracking {conntrack()};"
                    f" listen drops {listen_counters()})"
                )
        connect_seconds = time.monotonic() - started
        cpu_connect = cpu_seconds(pids) - cpu_start
        drops = {name: value - drops_before[name] for name, value in listen_counters().items()}
        connected = sum(c.ready[0] for c in clients)
        failed = sum(c.ready[1] for c in clients)
        errors = sorted({c.ready[2] for c in clients if c.ready[1]})

        # Held, idle: the node's own count, memory, CPU while nothing happens.
        time.sleep(1.0)
        cpu_idle_start, idle_started = cpu_seconds(pids), time.monotonic()
        time.sleep(1.0)
        idle_cpu_percent = 100 * (cpu_seconds(pids) - cpu_idle_start) / (time.monotonic() - idle_started)
        held = subscribers_held(node)
        holding = memory_kib(pids)
        kernel_holding = kernel_tcp_kib()
        nchan_shm = int(nchan_status(node)["shared memory used"].rstrip("K")) if flavour == "nchan" else None

        # Broadcasts, each delivered before the next.
        client_pids = [c.process.pid for c in clients]
        cpu_broadcast_start = cpu_seconds(pids)
        client_cpu_start = cpu_seconds(client_pids)
        broadcast_started = time.monotonic()
        for k in range(BROADCASTS):
            time.sleep(max(0.0, broadcast_started + k * BROADCAST_INTERVAL - time.monotonic()))
            head = f"bench {k} {time.time_ns()} "
            status = node.publish(CHANNEL, head + "x" * max(0, MESSAGE_BYTES - len(head)))
            if status not in (200, 201, 202):
                raise RuntimeError(f"publish {k}: HTTP {status}")
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        complete = all(c.wait_result(deadline) for c in clients)
        if not complete:
            for client in clients:
                client.send("report")
            for client in clients:
                if not client.wait_result(time.monotonic() + 30):
                    raise RuntimeError(f"ev_client {client.source} gave no report")
        broadcast_seconds = time.monotonic() - broadcast_started
        cpu_broadcast = cpu_seconds(pids) - cpu_broadcast_start
        client_cpu_broadcast = cpu_seconds(client_pids) - client_cpu_start
        after_broadcasts = memory_kib(pids)
        if node.pid is None:
            raise RuntimeError(f"nginx exited during the run:\n{node.error_log[-2000:]}")
        return summarize(
            flavour=flavour,
            profile=profile,
            workers=workers,
            clients=clients,
            connected=connected,
            failed=failed,
            errors=errors,
            held=held,
            connect_seconds=connect_seconds,
            cpu_connect=cpu_connect,
            drops=drops,
            waited=waited,
            tracking=tracking,
            idle_cpu_percent=idle_cpu_percent,
            idle=idle,
            holding=holding,
            kernel_tcp_kib=kernel_holding - kernel_before,
            nchan_shm=nchan_shm,
            broadcast_seconds=broadcast_seconds,
            cpu_broadcast=cpu_broadcast,
            client_cpu_broadcast=client_cpu_broadcast,
            after_broadcasts=after_broadcasts,
            complete=complete,
        )
    finally:
        for client in clients:
            client.stop()
        errors_logged = [
            line for line in node.error_log.splitlines() if "[emerg]" in line or "[alert]" in line
        ]
        node.cleanup()
        if errors_logged:
            print("  nginx error log:\n    " + "\n    ".join(errors_logged[:5]), flush=True)


def summarize(**r) -> dict:
    clients, held = r["clients"], max(r["held"], 1)
    broadcasts = []
    for k in range(BROADCASTS):
        values = sorted(v / 1000 for c in clients for v in c.result["latencies_us"].get(k, []))
        if values:
            broadcasts.append(
                {
                    "receivers": len(values),
                    "p50_ms": round(percentile(values, 0.50), 1),
                    "p99_ms": round(percentile(values, 0.99), 1),
                    "last_ms": round(values[-1], 1),
                }
            )
        else:
            broadcasts.append({"receivers": 0, "p50_ms": None, "p99_ms": None, "last_ms": None})
    delivered = [b for b in broadcasts if b["receivers"]]
    bytes_received = sum(c.result["bytes"] for c in clients)
    delivery_seconds = sum(b["last_ms"] for b in delivered) / 1000
    grown = {name: r["holding"][name] - r["idle"][name] for name in r["idle"]}
    return {
        "flavour": r["flavour"],
        "sysctl": r["profile"],
        "nginx_workers": r["workers"],
        "client_processes": len(clients),
        "subscribers_asked": SUBSCRIBERS,
        "subscribers_connected": r["connected"],
        "subscribers_failed": r["failed"],
        "connect_errors": r["errors"],
        "subscribers_held": r["held"],
        "closed_by_node": sum(c.result["closed"] for c in clients),
        "connect_seconds": round(r["connect_seconds"], 1),
        "connects_per_second": round(r["connected"] / r["connect_seconds"]),
        "nginx_cpu_connect_seconds": round(r["cpu_connect"], 2),
        "listen_drops_while_connecting": r["drops"],
        "conntrack_before": None
        if r["tracking"] is None
        else {"entries": r["tracking"][0], "max": r["tracking"][1]},
        "conntrack_wait_seconds": round(r["waited"], 1),
        "nginx_cpu_idle_percent": round(r["idle_cpu_percent"], 1),
        "memory_idle_node_kib": r["idle"],
        "memory_holding_kib": r["holding"],
        "rss_per_subscriber_kb": round(grown["rss_kib"] * 1024 / held / 1000, 2),
        "pss_per_subscriber_kb": round(grown["pss_kib"] * 1024 / held / 1000, 2),
        "shared_zone_resident_kib": r["holding"]["shm_kib"],
        "nchan_shared_memory_used_kib": r["nchan_shm"],
        "kernel_tcp_per_subscriber_kb_both_ends": round(r["kernel_tcp_kib"] * 1024 / held / 1000, 2),
        "message_bytes": MESSAGE_BYTES,
        "broadcasts": broadcasts,
        "all_delivered": r["complete"] and all(b["receivers"] >= r["held"] for b in broadcasts),
        "delivery_p50_ms": max((b["p50_ms"] for b in delivered), default=None),
        "delivery_p99_ms": max((b["p99_ms"] for b in delivered), default=None),
        "delivery_last_ms": max((b["last_ms"] for b in delivered), default=None),
        "bytes_received": bytes_received,
        "delivered_bytes_per_second": round(bytes_received / delivery_seconds) if delivery_seconds else None,
        "delivered_messages_per_second": (
            round(sum(b["receivers"] for b in delivered) / delivery_seconds) if delivery_seconds else None
        ),
        "nginx_cpu_broadcast_seconds": round(r["cpu_broadcast"], 2),
        "nginx_cpu_per_broadcast_ms": round(1000 * r["cpu_broadcast"] / max(BROADCASTS, 1), 1),
        "nginx_cpu_broadcast_percent": round(100 * r["cpu_broadcast"] / r["broadcast_seconds"], 1),
        "client_cpu_per_broadcast_ms": round(1000 * r["client_cpu_broadcast"] / max(BROADCASTS, 1), 1),
        "memory_after_broadcasts_kib": r["after_broadcasts"],
        "rss_growth_per_broadcast_kib": round(
            (r["after_broadcasts"]["rss_kib"] - r["holding"]["rss_kib"]) / max(BROADCASTS, 1)
        ),
    }


# --- report ------------------------------------------------------------------------------

ROWS = [
    ("subscribers held (node's count)", "subscribers_held", "{:,}"),
    ("  connected / failed", None, None),
    ("  connect time, s", "connect_seconds", "{}"),
    ("  nginx CPU while connecting, s", "nginx_cpu_connect_seconds", "{}"),
    ("  SYNs dropped (listen overflows)", None, None),
    ("  nginx CPU idle, holding, %", "nginx_cpu_idle_percent", "{}"),
    ("nginx RSS per subscriber, KB", "rss_per_subscriber_kb", "{}"),
    ("nginx PSS per subscriber, KB", "pss_per_subscriber_kb", "{}"),
    ("  nginx RSS holding, MiB", None, None),
    ("  shared zone resident, KiB", "shared_zone_resident_kib", "{:,}"),
    ("  nchan shared memory used, KiB", "nchan_shared_memory_used_kib", "{}"),
    ("delivery p50, ms (worst broadcast)", "delivery_p50_ms", "{}"),
    ("delivery p99, ms (worst broadcast)", "delivery_p99_ms", "{}"),
    ("until the last subscriber, ms", "delivery_last_ms", "{}"),
    ("  every subscriber got every message", "all_delivered", "{}"),
    ("delivered, MB/s", None, None),
    ("delivered, messages/s", "delivered_messages_per_second", "{:,}"),
    ("nginx CPU per broadcast, ms", "nginx_cpu_per_broadcast_ms", "{}"),
    ("  clients' CPU per broadcast, ms", "client_cpu_per_broadcast_ms", "{}"),
    ("  nginx RSS growth per broadcast, KiB", "rss_growth_per_broadcast_kib", "{:,}"),
]


def cell(result: dict, label: str, key: str | None, form: str | None) -> str:
    if label.strip() == "connected / failed":
        return f"{result['subscribers_connected']:,} / {result['subscribers_failed']:,}"
    if label.strip() == "SYNs dropped (listen overflows)":
        drops = result["listen_drops_while_connecting"]
        return f"{drops.get('ListenDrops', 0):,} ({drops.get('ListenOverflows', 0):,})"
    if label.strip() == "nginx RSS holding, MiB":
        return f"{result['memory_holding_kib']['rss_kib'] / 1024:.0f}"
    if label.strip() == "delivered, MB/s":
        rate = result["delivered_bytes_per_second"]
        return "-" if rate is None else f"{rate / 1e6:.1f}"
    value = result.get(key)
    return "-" if value is None else form.format(value)


def verdicts(result: dict) -> list[dict]:
    checks = [
        ("subscribers_held", result["subscribers_held"], ">=", TARGETS["subscribers_held"]),
        ("delivery_p99_ms", result["delivery_p99_ms"], "<=", TARGETS["delivery_p99_ms"]),
        (
            "memory_per_subscriber_kb",
            result["pss_per_subscriber_kb"],
            "<=",
            TARGETS["memory_per_subscriber_kb"],
        ),
    ]
    out = []
    for name, value, op, target in checks:
        met = value is not None and (value >= target if op == ">=" else value <= target)
        if name == "delivery_p99_ms":
            met = met and result["all_delivered"]
        out.append({"name": name, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def print_report(results: dict) -> None:
    runs = results["runs"]
    width = max(len(label) for label, _, _ in ROWS)
    print(
        f"\nnode capacity: one push node, {SUBSCRIBERS:,} EventSource subscribers, {BROADCASTS} broadcasts of"
        f" {MESSAGE_BYTES} bytes ({results['machine']['cpus']} cpus, loopback, load before"
        f" {' '.join(f'{x:.1f}' for x in results['load_average_before'])})"
    )
    for note in results["notes"]:
        print(f"  note: {note}")
    heads = [f"{r['flavour']} / {r['sysctl']}" for r in runs]
    col = max(18, *(len(h) for h in heads))
    print(f"\n  {'':<{width}}" + "".join(f"  {h:>{col}}" for h in heads))
    for label, key, form in ROWS:
        print(f"  {label:<{width}}" + "".join(f"  {cell(r, label, key, form):>{col}}" for r in runs))
    print("\n  per broadcast (p50 / p99 / last, ms):")
    for r in runs:
        parts = [f"{b['p50_ms']}/{b['p99_ms']}/{b['last_ms']}" for b in r["broadcasts"]]
        print(f"    {r['flavour'] + ' / ' + r['sysctl']:<{col}}  " + "  ".join(parts))
    print("\ntargets (memory = nginx PSS growth per subscriber; p99 also needs every message delivered):")
    for r in runs:
        for v in r["targets"]:
            verdict = "met" if v["met"] else "MISSED"
            print(
                f"  {r['flavour'] + ' / ' + r['sysctl']:<{col}}  {v['name']:<25} {v['value']!s:>10}  "
                f"target {v['target']:<9} {verdict}"
            )


def save(results: dict) -> Path:
    directory = BENCH / "results"
    directory.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    path = directory / f"node-capacity-{results['timestamp']}.json"
    path.write_text(text)
    (directory / "latest-node-capacity.json").write_text(text)
    return path


def push_stream_built() -> tuple[bool, str]:
    if not BUILT_MODULE.exists():
        return False, "the push-stream module is not built (PUSH_STREAM_SRC unset): nchan flavour only"
    built_for = (
        (BUILT_MODULE.parent / "nginx-version").read_text().strip()
        if (BUILT_MODULE.parent / "nginx-version").exists()
        else ""
    )
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "nginx"], capture_output=True, text=True
    ).stdout.strip()
    if built_for and installed and built_for != installed:
        return False, f"the push-stream module was built for nginx {built_for}, not {installed}: nchan only"
    return True, ""


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("node capacity: not root: the role's sysctl values cannot be applied", file=sys.stderr)
    build_client()
    notes = []
    flavours = [f for f in FLAVOURS if f]
    if "push_stream" in flavours:
        built, why = push_stream_built()
        if not built:
            flavours.remove("push_stream")
            notes.append(why)
    workers, processes = plan(SUBSCRIBERS)
    notes.append(
        f"{workers} nginx workers (worker_rlimit_nofile {RLIMIT_NOFILE}, reuseport), {processes} client"
        f" processes from 127.0.0.2-127.0.0.{1 + processes}"
    )
    if tracking := conntrack():
        notes.append(
            f"connection tracking is on here (nf_conntrack_max {tracking[1]:,}): every subscriber takes an"
            " entry, a full table drops new connections; sysctl.d/60-realtime-glue.conf does not size it"
        )
    results = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "load_average_before": list(os.getloadavg()),
        "subscribers": SUBSCRIBERS,
        "broadcasts": BROADCASTS,
        "message_bytes": MESSAGE_BYTES,
        "targets": TARGETS,
        "notes": notes,
        "sysctl": {},
        "runs": [],
    }
    started = time.monotonic()
    for profile in [p for p in PROFILES if p]:
        if profile == "host":
            results["sysctl"]["host"] = {key: read_sysctl(key) for key in role_sysctl_values()}
            for flavour in flavours:
                results["runs"].append(run(flavour, profile))
        elif profile == "role":
            with RoleSysctl() as role:
                results["sysctl"]["role_applied"] = role.applied
                results["sysctl"]["role_skipped"] = role.skipped
                for key, why in role.skipped.items():
                    notes.append(f"role sysctl {key} not applied: {why}")
                for flavour in flavours:
                    results["runs"].append(run(flavour, profile))
        else:
            raise SystemExit(f"BENCH_CAPACITY_PROFILES: unknown profile {profile!r} (host, role)")
    for r in results["runs"]:
        r["targets"] = verdicts(r)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    print_report(results)
    print(f"\nsaved {save(results).relative_to(REPO)} ({results['elapsed_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
