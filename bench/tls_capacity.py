"""`make bench`, part 3: what HTTPS costs a push node, beside plain HTTP.

One nginx push node on loopback, rendered from nginx/push-stream.conf with HTTPS
(a throwaway CA and certificate from tests/support/tls.py, ECDSA P-256 as certbot
issues by default) and its subscribers kept on the plain listener too, so every
kind of subscriber meets the same node. For each `ssl_buffer_size` in
BENCH_TLS_BUFFER_SIZES (nginx's default 16k, and the role's 4k):

- memory per subscriber: BENCH_TLS_SUBSCRIBERS EventSource subscribers of one
  channel held as plain HTTP/1.1, TLS HTTP/1.1, TLS HTTP/2 with one stream per
  connection, and TLS HTTP/2 with BENCH_TLS_H2_STREAMS streams per connection (a
  page with several channels), each on a freshly started node (freed memory
  would hide the next kind's); the nginx PSS growth over the idle node after one
  broadcast reached every subscriber (nginx allocates a connection's TLS write
  buffer on its first write), divided by the subscribers; and nginx's CPU per
  delivered message over ten small broadcasts and ten of BENCH_TLS_LARGE_MESSAGE
  bytes (8192: cut into ssl_buffer_size records). The client is
  bench/tls_client.py (asyncio; HTTP/2 frames written by hand).
- connection setup: h2load opening BENCH_TLS_SETUP_CLIENTS connections at once,
  one GET /health each, in rounds for BENCH_TLS_SETUP_SECONDS: connections per
  second for plain HTTP/1.1, TLS HTTP/1.1 and TLS HTTP/2; and `openssl s_time`'s
  full handshakes against resumed ones (the session cache) one after the other.

From the figures it states what 1,000,000 TLS subscribers need on one node
(nginx memory, the kernel's socket memory measured by bench/node_capacity.py,
and the handshakes to take them all back after a restart). A measurement, not a
test: nothing fails on a figure; errors do. The load average is printed beside
the figures (this machine is shared: compare ratios of one run).
Results: bench/results/tls-capacity-<timestamp>.json and latest-tls-capacity.json.

Environment: BENCH_TLS_SUBSCRIBERS (3000), BENCH_TLS_H2_STREAMS (10),
BENCH_TLS_BUFFER_SIZES (16k,4k), BENCH_TLS_SETUP_CLIENTS (200), BENCH_TLS_SETUP_SECONDS (5),
BENCH_TLS_FLAVOUR (push_stream; or nchan).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCH))

from node_run import memory_kib, process_tree  # noqa: E402

from support.push_node import PushNode, ServerTLS, missing_module  # noqa: E402
from support.tls import TestCA  # noqa: E402

SUBSCRIBERS = int(os.environ.get("BENCH_TLS_SUBSCRIBERS", 3000))
H2_STREAMS = int(os.environ.get("BENCH_TLS_H2_STREAMS", 10))
BUFFER_SIZES = os.environ.get("BENCH_TLS_BUFFER_SIZES", "16k,4k,1k").split(",")
SETUP_CLIENTS = int(os.environ.get("BENCH_TLS_SETUP_CLIENTS", 200))
SETUP_SECONDS = float(os.environ.get("BENCH_TLS_SETUP_SECONDS", 5))
# A second broadcast this large: what splitting it into ssl_buffer_size records costs.
LARGE_MESSAGE = int(os.environ.get("BENCH_TLS_LARGE_MESSAGE", 8192))
BROADCASTS = 10  # of each size, for nginx's CPU per delivery
FLAVOUR = os.environ.get("BENCH_TLS_FLAVOUR") or "push_stream"
CHANNEL = "bench"
NAME = "localhost"
KINDS = [  # (label, client mode, streams per connection)
    ("plain HTTP/1.1", "plain", 1),
    ("TLS HTTP/1.1", "h1", 1),
    ("TLS HTTP/2, 1 stream/conn", "h2", 1),
    (f"TLS HTTP/2, {H2_STREAMS} streams/conn", "h2", H2_STREAMS),
]
# node_capacity.py's figure for the kernel's memory per idle subscriber socket
# (both ends on loopback, halved), used for the 1,000,000 estimate.
KERNEL_TCP_KB_PER_SOCKET = float(os.environ.get("BENCH_TLS_KERNEL_KB_PER_SOCKET", 4.0))
RESULTS = BENCH / "results"


def node_for(tls: ServerTLS, buffer_size: str) -> PushNode:
    node = PushNode(
        FLAVOUR,
        tls=tls,
        overrides={
            "push_stream_worker_processes": 2,
            "push_stream_worker_connections": 19_000,
            "push_stream_worker_rlimit_nofile": 19_000,
            "push_stream_listen_backlog": 4096,
            "push_stream_access_log": "off",
            "push_stream_plain_subscribers": True,
            "push_stream_tls_buffer_size": buffer_size,
            "push_stream_tls_session_cache_size": "64m",
            "push_stream_ping_interval": 30,
            "push_stream_shared_memory_size": "256m",
        },
    )
    # Not the test node's info level: a line per connection would be measured too.
    node.overrides["push_stream_error_log"] = f"{node.directory / 'error.log'} warn"
    return node


def pss_kib(node: PushNode) -> int:
    return memory_kib(process_tree(node.pid))["pss_kib"]


def count_subscribers(node: PushNode) -> int:
    if node.flavour == "push_stream":
        return node.subscribers(CHANNEL)
    body = node.request("GET", "/channels-stats", listener="cluster")[2]
    return int(re.search(rb"subscribers: (\d+)", body).group(1))


def broadcast(
    node: PushNode, client: subprocess.Popen, subscribers: int, texts: list[str], before: int
) -> dict:
    """Publishes `texts` one after the other and waits until every subscriber has
    them all (`before`: the messages the client had counted until now): the time
    that took (client polling included) and nginx's CPU per delivered message."""
    cpu_before = nginx_cpu(node)
    published = time.monotonic()
    for text in texts:
        node.publish(CHANNEL, text)
    wanted = before + len(texts) * subscribers
    received = total = 0
    while total < wanted and time.monotonic() - published < 60:
        client.stdin.write("count\n")
        client.stdin.flush()
        received, total = (int(n) for n in client.stdout.readline().split()[1:3])
        if total < wanted:
            time.sleep(0.05)
    deliveries = max(total - before, 1)
    return {
        "received": received,
        "messages": total,
        "seconds": round(time.monotonic() - published, 3),
        "nginx_cpu_us_per_delivery": round((nginx_cpu(node) - cpu_before) * 1e6 / deliveries, 2),
    }


def hold(node: PushNode, mode: str, streams: int) -> dict:
    """SUBSCRIBERS of one kind on a freshly started node: memory and timings."""
    node.restart()
    time.sleep(1)
    idle = pss_kib(node)
    port = node.port if mode == "plain" else node.tls_port
    client = subprocess.Popen(
        [sys.executable, str(BENCH / "tls_client.py"), mode, node.host, str(port), NAME,
         str(node.tls.trust_path), str(SUBSCRIBERS), str(streams), f"/ev/{CHANNEL}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        started = time.monotonic()
        ok, failed, first_error = client.stdout.readline().split()[1:4]
        connect_seconds = time.monotonic() - started
        held = count_subscribers(node)
        connected = pss_kib(node)
        small = broadcast(node, client, int(ok), [f"bench {n}" for n in range(BROADCASTS)], 0)
        after = pss_kib(node)
        large_text = "bench large " + "x" * (LARGE_MESSAGE - 12)
        large = broadcast(node, client, int(ok), [large_text] * BROADCASTS, small["messages"])
        after_large = pss_kib(node)
    finally:
        client.stdin.write("quit\n")
        client.stdin.flush()
        client.wait(60)
    return {
        "subscribers": int(ok),
        "failed": int(failed),
        "first_error": first_error,
        "held_by_node": held,
        "received_broadcast": small["received"],
        "connections": -(-int(ok) // streams),
        "connect_seconds": round(connect_seconds, 2),
        "broadcast_seconds": small["seconds"],
        "nginx_cpu_us_per_delivery_small": small["nginx_cpu_us_per_delivery"],
        "nginx_cpu_us_per_delivery_large": large["nginx_cpu_us_per_delivery"],
        "idle_pss_kib": idle,
        "connected_pss_kib": connected - idle,
        "after_broadcast_pss_kib": after - idle,
        "bytes_per_subscriber": round((after - idle) * 1024 / max(int(ok), 1)),
        "bytes_per_subscriber_before_broadcast": round((connected - idle) * 1024 / max(int(ok), 1)),
        "bytes_per_subscriber_after_large": round((after_large - idle) * 1024 / max(int(ok), 1)),
    }


def nginx_cpu(node: PushNode) -> float:
    """Seconds on CPU of the nginx master and workers (schedstat: nanoseconds,
    not /proc/stat's 10 ms ticks)."""
    total = 0
    for pid in process_tree(node.pid):
        total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return total / 1e9


def h2load_rate(node: PushNode, url: str, http1: bool) -> dict:
    """New connections, one GET /health each: rounds of SETUP_CLIENTS opened at
    once by h2load for SETUP_SECONDS. The rate includes the client (on the same
    cores); nginx's CPU per connection does not."""
    connections, elapsed = 0, 0.0
    cpu_before = nginx_cpu(node)
    deadline = time.monotonic() + SETUP_SECONDS
    while time.monotonic() < deadline:
        args = ["h2load", "-n", str(SETUP_CLIENTS), "-c", str(SETUP_CLIENTS), "-m", "1"]
        done = subprocess.run(
            [*args, *(["--h1"] if http1 else []), url], capture_output=True, text=True, timeout=60
        )
        finished = re.search(r"finished in ([\d.]+)(m?s)", done.stdout)
        succeeded = re.search(r"(\d+) succeeded", done.stdout)
        if not finished or not succeeded or int(succeeded.group(1)) != SETUP_CLIENTS:
            raise RuntimeError(f"h2load {url}: {done.stdout[-800:]}{done.stderr[-400:]}")
        connections += SETUP_CLIENTS
        elapsed += float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    cpu = nginx_cpu(node) - cpu_before
    return {
        "connections": connections,
        "per_second": round(connections / elapsed),
        "nginx_cpu_us_per_connection": round(cpu * 1e6 / connections),
    }


def handshakes(node: PushNode, resume: bool) -> dict:
    """TLS connections one after the other (python's ssl, one GET /health each),
    full handshakes or resuming the first connection's session (the shared
    session cache: tickets are off): nginx's CPU per connection."""
    context = node.tls.client_context()
    session, resumed, count = None, 0, 0
    cpu_before = nginx_cpu(node)
    started = time.monotonic()
    while time.monotonic() - started < SETUP_SECONDS:
        with socket.create_connection((node.host, node.tls_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=NAME, session=session) as tls:
                tls.sendall(f"GET /health HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
                while tls.recv(4096):
                    pass
                resumed += tls.session_reused
                if resume and session is None:
                    session = tls.session
        count += 1
    seconds = time.monotonic() - started
    cpu = nginx_cpu(node) - cpu_before
    return {
        "connections": count,
        "resumed": resumed,
        "per_second": round(count / seconds),
        "nginx_cpu_us_per_connection": round(cpu * 1e6 / count),
    }


def setup_rates(node: PushNode) -> dict:
    node.restart()
    tls_url = f"https://{node.host}:{node.tls_port}/health"
    return {
        "plain HTTP/1.1": h2load_rate(node, f"{node.plain_url}/health", http1=True),
        "TLS HTTP/1.1": h2load_rate(node, tls_url, http1=True),
        "TLS HTTP/2": h2load_rate(node, tls_url, http1=False),
        "TLS full handshake, one client": handshakes(node, resume=False),
        "TLS resumed session, one client": handshakes(node, resume=True),
    }


def estimate(results: dict) -> dict:
    """What 1,000,000 TLS subscribers on one node need, from the role's buffer size."""
    runs = results["runs"]
    size = "4k" if "4k" in runs else next(iter(runs))
    chosen = runs[size]
    h1 = chosen["kinds"]["TLS HTTP/1.1"]["bytes_per_subscriber"]
    h2 = chosen["kinds"][KINDS[3][0]]["bytes_per_subscriber"]
    plain = chosen["kinds"]["plain HTTP/1.1"]["bytes_per_subscriber"]
    full_us = results["setup"]["TLS HTTP/1.1"]["nginx_cpu_us_per_connection"]
    million = 1_000_000
    return {
        "buffer_size": size,
        "nginx_gib_tls_http1": round(h1 * million / 2**30, 2),
        "nginx_gib_tls_http2": round(h2 * million / 2**30, 2),
        "nginx_gib_plain": round(plain * million / 2**30, 2),
        "kernel_gib": round(KERNEL_TCP_KB_PER_SOCKET * 1024 * million / 2**30, 2),
        "session_cache_mb_for_all": round(million / 4000),
        "handshakes_per_nginx_core_second": round(1e6 / full_us),
        "reconnect_core_minutes": round(million * full_us / 1e6 / 60, 1),
    }


def print_report(results: dict) -> None:
    title = (
        f"{results['flavour']}, {results['subscribers']} subscribers per kind, load {results['load_average']}"
    )
    print(f"\n=== TLS on a push node ({title}) ===")
    header = ("kind", "held", "got", "conns", "bytes/sub", "after large", "us/msg", "us/large")
    line = "  {:32} {:>6} {:>6} {:>6} {:>10} {:>11} {:>7} {:>8}"
    for size, run in results["runs"].items():
        print(f"\nssl_buffer_size {size}:")
        print(line.format(*header))
        for label, k in run["kinds"].items():
            row = (label, k["held_by_node"], k["received_broadcast"], k["connections"])
            row += (f"{k['bytes_per_subscriber']:,}", f"{k['bytes_per_subscriber_after_large']:,}")
            row += (k["nginx_cpu_us_per_delivery_small"], k["nginx_cpu_us_per_delivery_large"])
            print(line.format(*row))
    print("  (bytes/sub: nginx PSS per subscriber after small broadcasts; after large: after")
    print(f"  {LARGE_MESSAGE}-byte ones; us/msg, us/large: nginx CPU per delivered message)")
    setup = results["setup"]
    plain = setup["plain HTTP/1.1"]
    print("\nconnection setup, one GET /health per connection (rate: client on the same cores):")
    print("  {:34} {:>9} {:>13} {:>9}".format("kind", "conn/s", "nginx us/conn", "x plain"))
    for label, row in setup.items():
        ratio = row["nginx_cpu_us_per_connection"] / max(plain["nginx_cpu_us_per_connection"], 1)
        cpu = row["nginx_cpu_us_per_connection"]
        print(f"  {label:34} {row['per_second']:>9,} {cpu:>13,} {ratio:>9.1f}")
    e = results["estimate"]
    lines = [
        f"1,000,000 TLS subscribers on one node (ssl_buffer_size {e['buffer_size']}):",
        f"  nginx memory: {e['nginx_gib_tls_http1']} GiB as HTTP/1.1 connections,",
        f"  {e['nginx_gib_tls_http2']} GiB as HTTP/2 streams ({H2_STREAMS} per connection),",
        f"  against {e['nginx_gib_plain']} GiB in plain HTTP;",
        f"  kernel socket memory ~{e['kernel_gib']} GiB more (bench/node_capacity.py); 1,000,000 open files;",
        f"  ssl_session_cache {e['session_cache_mb_for_all']}m lets every one resume after a reload;",
        f"  a full handshake costs nginx {1e6 / e['handshakes_per_nginx_core_second']:.0f} us of CPU:",
        f"  all of them reconnecting after a restart take {e['reconnect_core_minutes']} core-minutes",
        f"  ({e['handshakes_per_nginx_core_second']:,} handshakes per core-second).",
    ]
    print("\n" + "\n".join(lines))


def save(results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"tls-capacity-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    (RESULTS / "latest-tls-capacity.json").write_text(json.dumps(results, indent=2))
    return path


def main() -> int:
    if why := missing_module(FLAVOUR):
        raise SystemExit(f"tls capacity: {why}")
    workdir = Path(tempfile.mkdtemp(prefix="tls-capacity-"))
    ca = TestCA.create(workdir / "ca")
    certificate = ca.intermediate().issue([NAME], ips=["127.0.0.1"])
    tls = ServerTLS(certificate.certificate_path, certificate.key_path, ca.certificate_path, NAME)
    results = {
        "flavour": FLAVOUR,
        "subscribers": SUBSCRIBERS,
        "h2_streams": H2_STREAMS,
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "runs": {},
    }
    print(f"tls_capacity: flavour {FLAVOUR}, {SUBSCRIBERS} subscribers per kind, buffer sizes {BUFFER_SIZES}")
    for size in BUFFER_SIZES:
        node = node_for(tls, size)
        try:
            node.start()
            kinds = {}
            for label, mode, streams in KINDS:
                kinds[label] = hold(node, mode, streams)
                per_subscriber = kinds[label]["bytes_per_subscriber"]
                print(f"  ssl_buffer_size {size}, {label}: {per_subscriber:,} bytes/subscriber")
            results["runs"][size] = {"kinds": kinds}
            if size == BUFFER_SIZES[-1]:
                results["setup"] = setup_rates(node)
        finally:
            node.cleanup()
    results["estimate"] = estimate(results)
    print_report(results)
    print(f"\nsaved {save(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
