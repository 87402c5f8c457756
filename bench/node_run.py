"""One measured push node: start it in a testbed, connect N EventSource subscribers, let
it sit idle, broadcast messages of each size one after another, and return what it cost.

The node is one of
- `push_stream` / `nchan`: nginx rendered from nginx/push-stream.conf with the role's
  defaults (tests/support/push_node.py), several workers listening with `reuseport`;
- `baseline`: bench/fanout_baseline.c, the least a node can do (same requests, same
  bytes, one write per subscriber), with as many worker processes.
The subscribers are bench/ev_client.c processes (epoll), each from its own source address
and holding at most 12,500 sockets (this machine caps open files at 20,000 per process).

Each broadcast carries `bench K <publish time in ns>` and an `Event-ID` header, as the
glue's messages do. The next one is published once every subscriber has the previous
one, so each is measured alone: the node's CPU from its cgroup (testbed.NodeCpu) from
just before the publish until every subscriber has it (plus 0.2 s for the last ACKs),
divided by the subscribers that got it, is the CPU per delivery.

Used by bench/node_capacity.py and bench/node_settings.py; not run on its own.
"""

from __future__ import annotations

import math
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

from testbed import Testbed, process_cpu_seconds  # noqa: E402

from support.push_node import NGINX, PushNode  # noqa: E402  (tests/ on the path above)

CHANNEL = "bench"
PORT = 8080  # the node has its namespace to itself
PER_PROCESS_SOCKETS = 12_500  # under the 20,000 open-files cap, with room to spare
RLIMIT_NOFILE = 19_000
INFLIGHT_CONNECTS = 256  # per client process
CONNECT_TIMEOUT = float(os.environ.get("BENCH_CONNECT_TIMEOUT", 300))
DELIVERY_TIMEOUT = 60.0
SETTLE_SECONDS = 0.2  # after the last subscriber has a broadcast: its ACKs reach the node
NO_PING_SECONDS = 3600  # "no pings" for nginx (a ping inside a window would be counted)
BUILD = REPO / "build" / "bench"
SOURCES = {"ev_client": BENCH / "ev_client.c", "fanout_baseline": BENCH / "fanout_baseline.c"}
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def build_programs() -> dict[str, Path]:
    """gcc -O2 of the bench's C programs into build/bench/ (when changed)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, source in SOURCES.items():
        binary = BUILD / name
        if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
            subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
        built[name] = binary
    return built


def processes_for(subscribers: int) -> int:
    """Node workers and client processes: enough that none holds more than 12,500 sockets."""
    return max(2, math.ceil(subscribers / PER_PROCESS_SOCKETS))


def frame_bytes(text: str, event_id: str | None) -> int:
    """Bytes push-stream (and the baseline) write for one EventSource message: an id
    chunk (with an Event-ID) and a data chunk, chunked transfer encoding."""
    parts = ([f"id: {event_id}\n"] if event_id is not None else []) + [f"data: {text}\n\n"]
    return sum(len(f"{len(p):x}\r\n") + len(p) + 2 for p in parts)


def message_text(k: int, size: int) -> str:
    head = f"bench {k} {time.time_ns()} "
    return head + "x" * max(0, size - len(head))


# --- /proc ----------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """The process and its children (nginx master and workers)."""
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                pids.append(int(entry.name))
    return pids


def memory_kib(pids: list[int]) -> dict:
    """RSS and PSS (shared pages divided among the processes that map them), summed."""
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
    return {"rss_kib": rss, "pss_kib": pss}


def kernel_kib() -> dict:
    """Slab (socket structures, files, epoll items: both ends of every connection) and
    TCP buffer memory (global, in pages)."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    slab = int(meminfo["Slab"].split()[0])
    tcp = 0
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            words = line.split()
            tcp = int(words[words.index("mem") + 1]) * PAGE_KIB
    return {"slab_kib": slab, "tcp_buffers_kib": tcp}


def cpu_busy_seconds() -> list[float]:
    """Per CPU: seconds not idle since boot (/proc/stat), for every task on it."""
    ticks = os.sysconf("SC_CLK_TCK")
    busy = []
    for line in Path("/proc/stat").read_text().splitlines():
        words = line.split()
        if words[0].startswith("cpu") and words[0] != "cpu":
            values = [int(v) for v in words[1:8]]
            busy.append((sum(values) - values[3] - values[4]) / ticks)
    return busy


def tcp_segments(snmp: str) -> tuple[int, int]:
    """(segments sent, segments received) by TCP in a namespace (/proc/<pid>/net/snmp)."""
    lines = [line.split() for line in snmp.splitlines() if line.startswith("Tcp:")]
    counters = dict(zip(lines[0][1:], lines[1][1:], strict=False))
    return int(counters["OutSegs"]), int(counters["InSegs"])


LISTEN_COUNTERS = ("ListenOverflows", "ListenDrops")


def listen_counters(netstat: str) -> dict[str, int]:
    lines = [line.split() for line in netstat.splitlines()]
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names[0] == "TcpExt:":
            counters = dict(zip(names[1:], (int(v) for v in values[1:]), strict=False))
            return {name: counters.get(name, 0) for name in LISTEN_COUNTERS}
    return {}


def percentile(ordered: list[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


# --- the nodes -------------------------------------------------------------------------


class NginxNode(PushNode):
    """PushNode started inside the testbed's node namespace, pinned and in its cgroup."""

    def __init__(self, bed: Testbed, flavour: str, overrides: dict):
        super().__init__(flavour, overrides=overrides, host="127.0.0.1", port=PORT)
        self.bed = bed

    def start(self, timeout: float = 30) -> NginxNode:
        self.check_config()
        command = [NGINX, "-p", str(self.directory), "-c", str(self.config_path)]
        self._process = subprocess.Popen(
            self.bed.node_command([*command, "-g", "daemon off;"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until_healthy(self, timeout)
        return self

    def request(self, *args, **kwargs):
        with self.bed.in_node_namespace():
            return super().request(*args, **kwargs)


class BaselineNode:
    """bench/fanout_baseline.c with the calls the bench makes of a PushNode."""

    flavour = "baseline"

    def __init__(self, bed: Testbed, binary: Path, workers: int, ping_seconds: int):
        self.bed = bed
        self.argv = [str(binary), "0.0.0.0", str(PORT), str(workers), str(ping_seconds)]
        self._process: subprocess.Popen | None = None
        self._helper = PushNode.__new__(PushNode)  # its plain HTTP client, nothing else
        self._helper.host, self._helper.port = "127.0.0.1", PORT
        self._helper.flavour = "push_stream"  # same statistics endpoint

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    @property
    def error_log(self) -> str:
        return ""

    def start(self, timeout: float = 30) -> BaselineNode:
        self._process = subprocess.Popen(
            self.bed.node_command(self.argv), stdout=subprocess.DEVNULL, preexec_fn=raise_open_files
        )
        wait_until_healthy(self, timeout)
        return self

    def request(self, *args, **kwargs):
        with self.bed.in_node_namespace():
            return PushNode.request(self._helper, *args, **kwargs)

    def publish(self, channel: str, text: str, event_id: str | None = None) -> int:
        with self.bed.in_node_namespace():
            return PushNode.publish(self._helper, channel, text, event_id)

    def subscribers(self, channel: str) -> int:
        with self.bed.in_node_namespace():
            return PushNode.subscribers(self._helper, channel)

    def cleanup(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def raise_open_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(RLIMIT_NOFILE, hard) if hard != resource.RLIM_INFINITY else RLIMIT_NOFILE
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def wait_until_healthy(node, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node._process.poll() is not None:
            stderr = node._process.stderr.read().decode() if node._process.stderr else ""
            raise RuntimeError(f"{node.flavour} exited: {stderr}")
        try:
            if node.request("GET", "/health", timeout=1)[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    node.cleanup()
    raise RuntimeError(f"{node.flavour} did not answer within {timeout:.0f} s")


def nginx_overrides(workers: int, ping_seconds: int, settings: dict) -> dict:
    """The role's defaults, except what a bench node needs (and `settings` under test)."""
    return {
        "push_stream_worker_processes": workers,
        "push_stream_worker_connections": RLIMIT_NOFILE,
        "push_stream_worker_rlimit_nofile": RLIMIT_NOFILE,
        # One listening socket per worker: the kernel spreads connections evenly.
        "push_stream_listen": [f"{PORT} reuseport"],
        "push_stream_listen_backlog": 65535,
        "push_stream_shared_memory_size": "256m",
        "push_stream_ping_interval": ping_seconds or NO_PING_SECONDS,
        **settings,
    }


def make_node(bed: Testbed, kind: str, workers: int, ping_seconds: int, settings: dict, programs: dict):
    if kind == "baseline":
        return BaselineNode(bed, programs["fanout_baseline"], workers, ping_seconds)
    node = NginxNode(bed, kind, nginx_overrides(workers, ping_seconds, settings))
    node.overrides["push_stream_error_log"] = f"{node.directory / 'error.log'} warn"
    node.overrides["push_stream_access_log"] = "off"
    return node


def flavour_available(flavour: str, overrides: dict | None = None) -> tuple[bool, str]:
    """Whether nginx loads this flavour's module here (`nginx -t` on the rendered config;
    `overrides`, e.g. another push_stream_module_path)."""
    try:
        node = PushNode(flavour, overrides=overrides)
    except RuntimeError as error:
        return False, str(error)
    try:
        node.check_config()
        return True, ""
    except RuntimeError as error:
        return False, str(error).strip().splitlines()[-1]
    finally:
        node.cleanup()


def module_file(path: Path) -> Path:
    """The push-stream module file of `path`: the file itself, or the one inside a
    libnginx-mod-http-push-stream .deb (unpacked once into build/bench/modules/)."""
    if path.suffix != ".deb":
        return path
    root = BUILD / "modules" / path.stem
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(path), str(root)], check=True)
    return root / "usr" / "lib" / "nginx" / "modules" / "ngx_http_push_stream_module.so"


def held_by(node) -> int:
    """The node's own count. nchan's per-channel count only sees one worker's
    subscribers; its stub status counts them all (this node has one channel)."""
    if node.flavour == "nchan":
        status, _, body = node.request("GET", "/channels-stats")
        lines = dict(line.split(": ", 1) for line in body.decode().splitlines() if ": " in line)
        return int(lines["subscribers"]) if status == 200 else 0
    return node.subscribers(CHANNEL)


# --- the subscribers --------------------------------------------------------------------


class Client:
    """One ev_client process: `count` subscribers from `source`."""

    def __init__(self, bed: Testbed, binary: Path, source: str, count: int, messages: int):
        self.source = source
        argv = [str(binary), bed.node_address, str(PORT), source, str(count), f"/ev/{CHANNEL}"]
        self.process = subprocess.Popen(
            bed.client_command([*argv, str(INFLIGHT_CONNECTS), str(messages)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_open_files,
        )
        self.events: queue.Queue[tuple] = queue.Queue()
        self.ready: tuple[int, int, str] | None = None
        self.done: set[int] = set()
        self.result: dict | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        partial: dict = {"bytes": 0, "closed": 0, "latencies_us": {}}
        for line in self.process.stdout:
            words = line.split()
            if not words:
                continue
            if words[0] == "ready":
                self.ready = (int(words[1]), int(words[2]), " ".join(words[3:]))
            elif words[0] == "done":
                self.done.add(int(words[1]))
            elif words[0] in ("bytes", "closed"):
                partial[words[0]] = int(words[1])
            elif words[0] == "lat":
                partial["latencies_us"][int(words[1])] = [int(v) for v in words[3:]]
            elif words[0] == "end":
                self.result = partial
            self.events.put(words[0])
        self.events.put("exit")

    def wait_for(self, condition, deadline: float) -> bool:
        while not condition():
            try:
                if (
                    self.events.get(timeout=max(0.0, deadline - time.monotonic())) == "exit"
                    and not condition()
                ):
                    raise RuntimeError(f"ev_client {self.source} exited ({self.process.wait()})")
            except queue.Empty:
                return condition()
        return True

    def send(self, command: str) -> None:
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.send("quit")
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdin.close()


# --- one run -----------------------------------------------------------------------------


@dataclass
class RunSpec:
    kind: str  # push_stream | nchan | baseline
    subscribers: int
    message_sizes: tuple[int, ...] = (128,)
    broadcasts: int = 3  # per message size
    workers: int | None = None  # default: processes_for(subscribers)
    ping_seconds: int = 0  # 0: none during the run
    idle_seconds: float = 1.0  # CPU measured while holding, before any broadcast
    settings: dict = field(default_factory=dict)  # nginx/push-stream.conf variables under test
    event_id: bool = True  # publish with an Event-ID header, as the glue does
    label: str = ""


def run(bed: Testbed, spec: RunSpec, programs: dict) -> dict:
    workers = spec.workers or processes_for(spec.subscribers)
    client_count = processes_for(spec.subscribers)
    messages = len(spec.message_sizes) * spec.broadcasts
    node = make_node(bed, spec.kind, workers, spec.ping_seconds, spec.settings, programs)
    clients: list[Client] = []
    try:
        node.start()
        pids = process_tree(node.pid)
        idle = memory_kib(pids)
        kernel_before = kernel_kib()
        drops_before = listen_counters(bed.node_proc(node.pid, "netstat"))
        cpu_start = bed.cpu.seconds(pids)
        started = time.monotonic()
        per_client, remaining = math.ceil(spec.subscribers / client_count), spec.subscribers
        for i in range(client_count):
            count = min(per_client, remaining)
            remaining -= count
            if count:
                clients.append(Client(bed, programs["ev_client"], bed.client_address(i), count, messages))
        deadline = started + CONNECT_TIMEOUT
        for client in clients:
            if not client.wait_for(lambda c=client: c.ready is not None, deadline):
                raise RuntimeError(
                    f"subscribers not connected within {CONNECT_TIMEOUT:.0f} s"
                    f" (the node counts {held_by(node)})"
                )
        connect_seconds = time.monotonic() - started
        cpu_connect = bed.cpu.seconds(pids) - cpu_start
        drops_after = listen_counters(bed.node_proc(node.pid, "netstat"))
        connected = sum(c.ready[0] for c in clients)

        time.sleep(0.5)
        cpu_idle_start, idle_started = bed.cpu.seconds(pids), time.monotonic()
        time.sleep(spec.idle_seconds)
        idle_cpu_seconds = bed.cpu.seconds(pids) - cpu_idle_start
        idle_elapsed = time.monotonic() - idle_started
        held = held_by(node)
        holding = memory_kib(pids)
        kernel_holding = kernel_kib()

        broadcasts = []
        client_pids = [c.process.pid for c in clients]
        k = 0
        for size in spec.message_sizes:
            for _ in range(spec.broadcasts):
                broadcasts.append(broadcast(bed, node, pids, clients, client_pids, k, size, spec.event_id))
                k += 1
        for client in clients:
            if client.result is None:
                client.send("report")
        for client in clients:
            if not client.wait_for(lambda c=client: c.result is not None, time.monotonic() + 60):
                raise RuntimeError(f"ev_client {client.source} gave no report")
        after = memory_kib(pids)
        if node.pid is None:
            raise RuntimeError(f"{spec.kind} exited during the run:\n{node.error_log[-2000:]}")
    finally:
        for client in clients:
            client.stop()
        logged = [line for line in node.error_log.splitlines() if "[emerg]" in line or "[alert]" in line]
        node.cleanup()
        if logged:
            print("  nginx error log:\n    " + "\n    ".join(logged[:5]), flush=True)

    for b in broadcasts:
        values = sorted(v / 1000 for c in clients for v in c.result["latencies_us"].get(b["k"], []))
        b["receivers"] = len(values)
        b.update(
            {
                "p50_ms": round(percentile(values, 0.50), 1) if values else None,
                "p99_ms": round(percentile(values, 0.99), 1) if values else None,
                "last_ms": round(values[-1], 1) if values else None,
            }
        )
        b["node_cpu_per_delivery_us"] = round(1e6 * b["node_cpu_seconds"] / max(b["receivers"], 1), 3)
        b["delivered_bytes"] = b["receivers"] * b["frame_bytes"]
        b["mb_per_second"] = (
            round(b["delivered_bytes"] / 1e6 / (b["last_ms"] / 1000), 2) if b["last_ms"] else None
        )
        b["mb_per_node_cpu_second"] = round(b["delivered_bytes"] / 1e6 / max(b["node_cpu_seconds"], 1e-9), 2)
    per_subscriber = 1024 / max(held, 1) / 1000  # KiB -> KB per subscriber
    return {
        "kind": spec.kind,
        "label": spec.label or spec.kind,
        "placement": bed.placement,
        "cpu_account": bed.cpu.kind,
        "node_workers": workers,
        "client_processes": len(clients),
        "settings": spec.settings,
        "event_id": spec.event_id,
        "ping_seconds": spec.ping_seconds,
        "subscribers_asked": spec.subscribers,
        "subscribers_connected": connected,
        "subscribers_failed": sum(c.ready[1] for c in clients),
        "connect_errors": sorted({c.ready[2] for c in clients if c.ready[1]}),
        "subscribers_held": held,
        "closed_by_node": sum(c.result["closed"] for c in clients),
        "connect_seconds": round(connect_seconds, 2),
        "connects_per_second": round(connected / connect_seconds),
        "node_cpu_connect_seconds": round(cpu_connect, 3),
        "node_cpu_per_connect_us": round(1e6 * cpu_connect / max(connected, 1), 2),
        "listen_drops_while_connecting": {n: drops_after[n] - drops_before[n] for n in drops_after},
        "node_cpu_idle_percent": round(100 * idle_cpu_seconds / idle_elapsed, 2),
        "memory_idle_node_kib": idle,
        "memory_holding_kib": holding,
        "memory_after_broadcasts_kib": after,
        "rss_per_subscriber_kb": round((holding["rss_kib"] - idle["rss_kib"]) * per_subscriber, 2),
        "pss_per_subscriber_kb": round((holding["pss_kib"] - idle["pss_kib"]) * per_subscriber, 2),
        # Both ends of each connection live on this machine: half is the node's.
        "kernel_slab_per_subscriber_kb": round(
            (kernel_holding["slab_kib"] - kernel_before["slab_kib"]) / 2 * per_subscriber, 2
        ),
        "broadcasts": broadcasts,
        "all_delivered": all(b["receivers"] >= held for b in broadcasts),
    }


def broadcast(bed, node, pids, clients, client_pids, k: int, size: int, with_id: bool = True) -> dict:
    """Publishes message k and waits until every client has it; the node's CPU meanwhile."""
    time.sleep(SETTLE_SECONDS)
    busy_start = cpu_busy_seconds()
    segments_start = tcp_segments(bed.node_proc(node.pid, "snmp"))
    cpu_start, client_cpu_start = bed.cpu.seconds(pids), process_cpu_seconds(client_pids)
    started = time.monotonic()
    text = message_text(k, size)
    event_id = str(k) if with_id else None
    status = node.publish(CHANNEL, text, event_id=event_id)
    if status not in (200, 201, 202):
        raise RuntimeError(f"publish {k}: HTTP {status}")
    deadline = started + DELIVERY_TIMEOUT
    complete = all(c.wait_for(lambda c=c: k in c.done, deadline) for c in clients)
    delivered_seconds = time.monotonic() - started
    time.sleep(SETTLE_SECONDS)
    node_cpu = bed.cpu.seconds(pids) - cpu_start
    segments = [
        after - before
        for after, before in zip(tcp_segments(bed.node_proc(node.pid, "snmp")), segments_start, strict=False)
    ]
    busy = [after - before for after, before in zip(cpu_busy_seconds(), busy_start, strict=False)]
    return {
        "k": k,
        "message_bytes": size,
        "frame_bytes": frame_bytes(text, event_id),
        "complete": complete,
        "delivered_seconds": round(delivered_seconds, 3),
        "node_cpu_seconds": round(node_cpu, 4),
        "client_cpu_seconds": round(process_cpu_seconds(client_pids) - client_cpu_start, 4),
        "cpu_busy_seconds": [round(b, 3) for b in busy],
        # In the node's namespace (loopback: both ends)
        "tcp_segments_out": segments[0],
        "tcp_segments_in": segments[1],
    }


def summary_by_size(result: dict) -> dict[int, dict]:
    """The median broadcast of each message size (the figures the reports print)."""
    out = {}
    for size in sorted({b["message_bytes"] for b in result["broadcasts"]}):
        rows = [b for b in result["broadcasts"] if b["message_bytes"] == size and b["receivers"]]
        if not rows:
            continue

        def median(key, rows=rows):
            values = sorted(r[key] for r in rows if r[key] is not None)
            return values[len(values) // 2] if values else None

        out[size] = {
            "frame_bytes": rows[0]["frame_bytes"],
            "node_cpu_per_delivery_us": median("node_cpu_per_delivery_us"),
            "node_cpu_per_broadcast_ms": round(1000 * median("node_cpu_seconds"), 1),
            "p50_ms": median("p50_ms"),
            "p99_ms": median("p99_ms"),
            "last_ms": median("last_ms"),
            "mb_per_second": median("mb_per_second"),
            "mb_per_node_cpu_second": median("mb_per_node_cpu_second"),
            "client_cpu_per_broadcast_ms": round(1000 * median("client_cpu_seconds"), 1),
            # The node namespace's TCP segments (loopback: the clients' too) per delivery.
            "segments_out_per_delivery": round(median("tcp_segments_out") / rows[0]["receivers"], 2),
            "segments_in_per_delivery": round(median("tcp_segments_in") / rows[0]["receivers"], 2),
        }
    return out
