"""Where a push node bench runs: network namespaces, a veth pair, CPU pinning, the node's
own CPU account and the sysctl values, all undone on exit.

Two placements:

- `apart`: the node in its own network namespace, the clients in another, joined by a
  veth pair (node 198.18.0.1, clients 198.18.1.1, .2, ...: RFC 2544's benchmarking
  range, reachable only inside these two namespaces). The node is pinned to CPU 0 and
  the clients to CPU 1 (taskset), and receive packet steering sends the packets each
  side receives to that side's CPU: a client socket's receive work runs on CPU 1, so it
  is not charged to the node (on loopback the writer's CPU runs the reader's TCP stack).
- `loopback`: node and clients in one namespace on its loopback, unpinned: how the
  bench ran before, kept for comparison.

The node's CPU is read from its own cgroup (cgroup v1 cpuacct or v2 cpu.stat, a
directory made for the run), every process of the node in it; where no cgroup can be
made, from /proc/<pid>/schedstat of its process tree. Fresh namespaces also keep the
firewall's connection tracking (loaded in the host's namespace by docker) out of the
way, and leave the host's per-namespace sysctl values alone.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
NODE_ADDRESS_APART = "198.18.0.1"
CLIENT_NETWORK_APART = "198.18.{}.{}"
PREFIX = "rgb"  # every namespace, link and cgroup this module makes starts with it
SAVED_SYSCTL_DIR = "/tmp"  # the host values a run changed, until it has put them back
CGROUP_ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup"))
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def in_netns(name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *argv], check=check, capture_output=True, text=True)


def remove_leftovers() -> list[str]:
    """Namespaces and cgroups of earlier runs whose process is gone (a run killed -9), and
    the host sysctl values such a run had changed, put back."""
    removed = []
    for saved in Path(SAVED_SYSCTL_DIR).glob(f"{PREFIX}*-sysctl.json"):
        owner = saved.name[len(PREFIX) :].split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            for key, value in reversed(list(json.loads(saved.read_text()).items())):
                subprocess.run(["sysctl", "-q", "-w", f"{key}={value}"], capture_output=True)
            saved.unlink()
            removed.append(str(saved))
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name[len(PREFIX) :].split("-")[0]
        if name.startswith(PREFIX) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            # That run's node and clients, orphaned: nothing else lives in its namespaces.
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(name)
    for root in CGROUP_ROOTS:
        for group in root.glob(f"{PREFIX}*-node"):
            owner = group.name[len(PREFIX) :].split("-")[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                try:
                    time.sleep(0.5)  # the processes killed above leave it
                    group.rmdir()
                    removed.append(str(group))
                except OSError:
                    pass
    return removed


class NodeCpu:
    """CPU seconds used by the node's processes: its own cgroup, else /proc."""

    def __init__(self, name: str):
        self.directory: Path | None = None
        self.kind = "proc"
        for root in CGROUP_ROOTS:
            if (root / "cpuacct.usage").exists() or (root / "cgroup.controllers").exists():
                try:
                    (root / name).mkdir()
                except OSError:
                    continue
                self.directory = root / name
                self.kind = "cgroup v1 cpuacct" if (root / "cpuacct.usage").exists() else "cgroup v2"
                break

    def wrap(self, argv: list[str]) -> list[str]:
        """The command, started inside the cgroup (so are all the processes it forks)."""
        if self.directory is None:
            return argv
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.directory), *argv]

    def seconds(self, pids: list[int]) -> float:
        if self.directory is not None:
            if (self.directory / "cpuacct.usage").exists():
                return int((self.directory / "cpuacct.usage").read_text()) / 1e9
            for line in (self.directory / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
        return process_cpu_seconds(pids)

    def remove(self) -> None:
        for _ in range(50):  # the node's processes may still be exiting
            if self.directory is None or not self.directory.exists():
                return
            try:
                self.directory.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        # left for remove_leftovers() of the next run


def process_cpu_seconds(pids: list[int]) -> float:
    """Time on CPU of these processes (schedstat, nanoseconds; all their threads)."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass
    return total / 1e9


@contextmanager
def entered(namespace: str):
    """Runs the block's socket calls (this thread only) inside the named namespace."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace}")
        yield
    finally:
        _libc.setns(home, CLONE_NEWNET)
        os.close(target)
        os.close(home)


class Testbed:
    """The namespaces of one placement; `with Testbed("apart", clients=8) as bed:`."""

    def __init__(self, placement: str, clients: int, sysctl_values: dict[str, str] | None = None):
        if placement not in ("apart", "loopback"):
            raise ValueError(f"placement {placement!r}: apart or loopback")
        if clients > 250 * 250:
            raise ValueError("too many client source addresses")
        if placement == "apart" and (os.cpu_count() or 1) < 2:
            raise ValueError("placement apart needs two CPUs (node on one, clients on the other)")
        self.placement = placement
        self.clients = clients
        self.sysctl_values = sysctl_values or {}
        tag = f"{PREFIX}{os.getpid()}"
        self.node_ns = f"{tag}-node"
        self.client_ns = f"{tag}-cli" if placement == "apart" else self.node_ns
        self.node_link, self.client_link = f"{tag}n", f"{tag}c"
        self.node_cpus = "0" if placement == "apart" else None
        self.client_cpus = "1" if placement == "apart" else None
        self.cpu = NodeCpu(f"{tag}-node")
        self.saved_sysctl = Path(SAVED_SYSCTL_DIR) / f"{tag}-sysctl.json"
        self.sysctl_applied: dict[str, str] = {}
        self.sysctl_skipped: dict[str, str] = {}
        self.host_values_changed: dict[str, str] = {}  # to put back on exit

    # --- addresses -----------------------------------------------------------------

    @property
    def node_address(self) -> str:
        """Where the clients connect."""
        return NODE_ADDRESS_APART if self.placement == "apart" else "127.0.0.1"

    def client_address(self, index: int) -> str:
        if self.placement == "apart":
            return CLIENT_NETWORK_APART.format(1 + index // 250, 1 + index % 250)
        return f"127.0.{index // 250}.{2 + index % 250}"

    # --- commands ------------------------------------------------------------------

    def node_command(self, argv: list[str]) -> list[str]:
        pin = ["taskset", "-c", self.node_cpus] if self.node_cpus else []
        # The cgroup first: `ip netns exec` mounts the namespace's own /sys over /sys/fs/cgroup.
        return self.cpu.wrap(["ip", "netns", "exec", self.node_ns, *pin, *argv])

    def client_command(self, argv: list[str]) -> list[str]:
        pin = ["taskset", "-c", self.client_cpus] if self.client_cpus else []
        return ["ip", "netns", "exec", self.client_ns, *pin, *argv]

    def in_node_namespace(self):
        return entered(self.node_ns)

    def node_proc(self, pid: int, name: str) -> str:
        """/proc/<pid>/net/<name> of a node process: the node namespace's view."""
        return Path(f"/proc/{pid}/net/{name}").read_text()

    # --- set-up and tear-down -----------------------------------------------------------

    def __enter__(self) -> Testbed:
        remove_leftovers()
        try:
            self._create()
            self._apply_sysctl()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _create(self) -> None:
        ip("netns", "add", self.node_ns)
        ip("-n", self.node_ns, "link", "set", "lo", "up")
        if self.placement == "loopback":
            return
        ip("netns", "add", self.client_ns)
        ip("-n", self.client_ns, "link", "set", "lo", "up")
        ip(
            "link", "add", self.node_link, "netns", self.node_ns, "type", "veth",
            "peer", "name", self.client_link, "netns", self.client_ns,
        )  # fmt: skip
        ip("-n", self.node_ns, "addr", "add", f"{NODE_ADDRESS_APART}/15", "dev", self.node_link)
        batch = "".join(
            f"addr add {self.client_address(i)}/15 dev {self.client_link}\n" for i in range(self.clients)
        )
        subprocess.run(["ip", "-n", self.client_ns, "-batch", "-"], input=batch, check=True, text=True)
        ip("-n", self.node_ns, "link", "set", self.node_link, "up")
        ip("-n", self.client_ns, "link", "set", self.client_link, "up")
        # Receive packet steering: what arrives at each side is processed on its CPU.
        for namespace, link, cpu in (
            (self.client_ns, self.client_link, self.client_cpus),
            (self.node_ns, self.node_link, self.node_cpus),
        ):
            mask = format(1 << int(cpu), "x")
            in_netns(namespace, "sh", "-c", f"echo {mask} > /sys/class/net/{link}/queues/rx-0/rps_cpus")

    def _apply_sysctl(self) -> None:
        """Each value in the namespaces where the kernel keeps it per namespace; the rest
        (tcp_mem, file-max, ...) on the host, put back on exit."""
        # Every host value first, on disk: a run killed between two writes is undone by the next.
        snapshot = {key: value for key in self.sysctl_values if (value := read_sysctl(key)) is not None}
        self.saved_sysctl.write_text(json.dumps(snapshot))
        for key, value in self.sysctl_values.items():
            host_before = snapshot.get(key)
            namespaces = {self.node_ns, self.client_ns}
            results = [in_netns(ns, "sysctl", "-q", "-w", f"{key}={value}", check=False) for ns in namespaces]
            if all(r.returncode == 0 for r in results):
                if host_before is not None and read_sysctl(key) != host_before:
                    self.host_values_changed[key] = host_before  # global after all
                self.sysctl_applied[key] = value
                continue
            if host_before is None:
                self.sysctl_skipped[key] = "not on this kernel"
                continue
            self.host_values_changed[key] = host_before
            done = subprocess.run(["sysctl", "-q", "-w", f"{key}={value}"], capture_output=True, text=True)
            if done.returncode == 0:
                self.sysctl_applied[key] = value
            else:
                self.sysctl_skipped[key] = done.stderr.strip() or f"sysctl exit {done.returncode}"

    def read_node_sysctl(self, key: str) -> str | None:
        done = in_netns(self.node_ns, "sysctl", "-n", key, check=False)
        return " ".join(done.stdout.split()) if done.returncode == 0 else read_sysctl(key)

    def __exit__(self, *exc) -> None:
        for key, value in reversed(list(self.host_values_changed.items())):
            subprocess.run(["sysctl", "-q", "-w", f"{key}={value}"], capture_output=True)
        self.saved_sysctl.unlink(missing_ok=True)
        for namespace in dict.fromkeys((self.client_ns, self.node_ns)):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self.cpu.remove()


def read_sysctl(key: str) -> str | None:
    try:
        return " ".join((Path("/proc/sys") / key.replace(".", "/")).read_text().split())
    except OSError:
        return None


def sysctl_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(value.split())
    return values
