"""The test cluster as the tests see it: hosts from an Ansible inventory, commands
over SSH, the push nodes' HTTP side, a producer on the glue node, and
subscribers that fail over between push nodes.

The inventory is the one Vagrant generates for the Vagrantfile
(.vagrant/provisioners/ansible/inventory/); CLUSTER_INVENTORY names another.
Nothing here depends on the provider: every host is reached at its ansible_host.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from support.push_node import EventStream, PushNode, ServerTLS

REPO = Path(__file__).resolve().parents[2]
VAGRANT_INVENTORY = REPO / ".vagrant" / "provisioners" / "ansible" / "inventory" / "vagrant_ansible_inventory"
PRODUCER = REPO / "tests" / "cluster" / "producer.py"
SSH_OPTIONS = [
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
    # A SYN to a node is now and then not answered on this machine (seen under
    # load): retry the connection, and share one per host among the commands.
    "-o", "ConnectionAttempts=4",
    "-o", "ControlPath=/tmp/realtime-glue-ssh-%C",
]  # fmt: skip
# Short commands share one connection per host (closed 30 s after the last);
# long-running ones use it when it exists but never become it (a master
# outliving its command would hold the command's output pipe open).
SHARED = ["-o", "ControlMaster=auto", "-o", "ControlPersist=30s"]
NOT_SHARED = ["-o", "ControlMaster=no"]


def inventory_path() -> Path:
    return Path(os.environ.get("CLUSTER_INVENTORY", VAGRANT_INVENTORY))


@dataclass
class Host:
    name: str
    address: str
    port: int
    user: str
    key: str | None
    groups: list[str] = field(default_factory=list)
    variables: dict = field(default_factory=dict)  # its inventory variables

    def ssh_command(self, command: str, shared: bool = True) -> list[str]:
        key = ["-i", self.key] if self.key else []
        remote = "sudo sh -c " + shlex.quote(command)
        sharing = SHARED if shared else NOT_SHARED
        return [
            "ssh",
            *SSH_OPTIONS,
            *sharing,
            *key,
            "-p",
            str(self.port),
            f"{self.user}@{self.address}",
            remote,
        ]

    def run(self, command: str, check: bool = True, timeout: float = 120, **kwargs):
        """Runs `command` as root on the host; returns the CompletedProcess (text)."""
        done = subprocess.run(
            self.ssh_command(command), capture_output=True, text=True, timeout=timeout, **kwargs
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{self.name}: {command!r} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def popen(self, command: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.ssh_command(command, shared=False), **kwargs)


class Cluster:
    """Hosts by inventory group: `redis`, `glue`, `push`."""

    def __init__(self, inventory: Path):
        listed = json.loads(
            subprocess.run(
                ["ansible-inventory", "-i", str(inventory), "--list"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        hostvars = listed["_meta"]["hostvars"]
        self.inventory = inventory
        self.hosts: dict[str, Host] = {}
        for name, variables in sorted(hostvars.items()):
            self.hosts[name] = Host(
                name=name,
                address=variables.get("ansible_host", name),
                port=int(variables.get("ansible_port", 22)),
                user=variables.get("ansible_user", "root"),
                key=variables.get("ansible_ssh_private_key_file"),
                variables=variables,
            )
        for group, content in listed.items():
            for name in content.get("hosts", []) if isinstance(content, dict) else []:
                self.hosts[name].groups.append(group)

    def group(self, name: str) -> list[Host]:
        return [host for host in self.hosts.values() if name in host.groups]

    @property
    def glue(self) -> Host:
        return self.group("glue")[0]

    @property
    def push_hosts(self) -> list[Host]:
        return self.group("push")

    def flavour(self) -> str:
        """What the push nodes run: the module nginx.conf loads."""
        conf = self.push_hosts[0].run("cat /etc/nginx/nginx.conf").stdout
        return "push_stream" if "ngx_http_push_stream_module" in conf else "nchan"

    def push_nodes(self) -> list[RemotePushNode]:
        """The push nodes; over HTTPS (by their first name, trusting the CA
        that issued their certificates) when the inventory gives them TLS."""
        flavour = self.flavour()
        nodes = []
        for host in self.push_hosts:
            mode = host.variables.get("push_stream_tls_mode", "none")
            tls = None
            if mode != "none":
                trust = (
                    self.acme_root() if mode == "acme" else Path(host.variables["push_stream_tls_trust_file"])
                )
                tls = ServerTLS(None, None, trust, host.variables["push_stream_tls_names"][0])
            nodes.append(RemotePushNode(host, flavour, tls=tls))
        return nodes

    def acme_root(self) -> Path:
        """The root certificate the test ACME CA (pebble) issues from now, fetched
        from its management API (a new one each time pebble starts), saved as
        build/cluster/acme-root.pem."""
        ca = self.group("acme_ca")[0]
        api_ca = self.push_hosts[0].variables["push_stream_tls_acme_ca_bundle"]
        context = ssl.create_default_context(cafile=api_ca)
        with urllib.request.urlopen(
            f"https://{ca.address}:15000/roots/0", context=context, timeout=10
        ) as answer:
            pem = answer.read()
        path = REPO / "build" / "cluster" / "acme-root.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pem)
        return path

    def enqueue(self, payload: str, pipeline: str = "demo") -> str:
        """`realtime-glue enqueue` on the glue node; returns the job id."""
        command = f"sudo -u realtime-glue realtime-glue enqueue {pipeline} {shlex.quote(payload)}"
        return self.glue.run(command).stdout.strip()

    def glue_status(self, pipeline: str = "demo") -> dict:
        out = self.glue.run(f"sudo -u realtime-glue realtime-glue status --json --sample 0 {pipeline}").stdout
        return json.loads(out)[0]

    def produce(
        self, channel: str, rate: float, count: int, pipeline: str = "demo", durable: bool = False
    ) -> Producer:
        return Producer(self.glue, channel, rate, count, pipeline, durable)


class RemotePushNode(PushNode):
    """The HTTP side of a push node of the cluster: its public listener (HTTPS on
    443 by its name when `tls`, else port 80 of its address), its plain listener
    (80) and its cluster listener (8080, which answers only the glue node's
    network); the tests' protocol clients (events, websocket, publish) work on it
    as on a local node. Its nginx is not ours: `host` runs commands on it."""

    def __init__(
        self,
        host: Host,
        flavour: str,
        port: int = 80,
        cluster_port: int = 8080,
        tls: ServerTLS | None = None,
        tls_port: int = 443,
    ):
        self.host_entry = host
        self.name = host.name
        self.flavour = flavour
        self.host = host.address
        self.port = port
        self.cluster_port = cluster_port
        self.tls = tls
        self.tls_port = tls_port if tls else None

    def subscribers(self, channel: str) -> int:
        """Subscribers connected to `channel` now, asked on the node itself: the
        statistics answer only the cluster's publisher networks (and loopback)."""
        url = f"http://127.0.0.1:{self.cluster_port}"
        if self.flavour == "push_stream":
            command = f"curl -s -w '\\n%{{http_code}}' '{url}/channels-stats?id={channel}'"
        else:  # nchan: a GET on the publisher location describes the channel
            command = f"curl -s -w '\\n%{{http_code}}' -H 'Accept: application/json' '{url}/pub?id={channel}'"
        body, _, status = self.host_entry.run(command).stdout.rpartition("\n")
        if status == "404":
            return 0
        if status != "200":
            raise RuntimeError(f"{self.name}: channel stats for {channel}: HTTP {status} {body!r}")
        return int(json.loads(body)["subscribers"])


class Producer:
    """`producer.py` on the glue node: `count` jobs at `rate` a second on
    `channel`; `ids` fills with the job ids as they are queued."""

    def __init__(
        self, glue: Host, channel: str, rate: float, count: int, pipeline: str, durable: bool = False
    ):
        self.ids: list[str] = []
        self.count = count
        args = f"--pipeline {pipeline} --channel {shlex.quote(channel)} --rate {rate} --count {count}"
        args += " --durable" if durable else ""
        with PRODUCER.open("rb") as script:
            self._process = glue.popen(
                f"sudo -u realtime-glue python3 - {args}",
                stdin=script,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            self.ids.append(line.decode().strip())

    def wait(self, timeout: float = 300) -> list[str]:
        self._process.wait(timeout)
        self._reader.join(timeout)
        if self._process.returncode != 0 or len(self.ids) != self.count:
            raise RuntimeError(
                f"producer: exit {self._process.returncode}, {len(self.ids)}/{self.count} jobs: "
                f"{self._process.stderr.read().decode()}"
            )
        return self.ids

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)


class FailoverSubscriber:
    """An EventSource client over several push nodes, as a browser behind a
    client-side balancer would be: when its connection ends it reconnects to
    the next node that answers, sending Last-Event-ID. With `home`, it goes back
    to its home node (again with Last-Event-ID) once that node has answered
    /health for `settle` seconds, so subscribers return to a restarted node.

    Without `shared_ids` (nchan: every node numbers its messages itself), the
    Last-Event-ID goes only to the node that issued it. `reconnect_delay`: the
    pause before reconnecting after a stream ended (a browser's EventSource
    waits 3 s; 0 reconnects at once).

    `received` lists the job ids (from the message bodies) in arrival order;
    `switches` lists the reconnections to another node; `timeline` says when each
    message and each reconnection came (for `describe_gaps`)."""

    def __init__(
        self,
        nodes: list[RemotePushNode],
        channel: str,
        home: int = 0,
        return_home: bool = False,
        settle: float = 2.0,
        shared_ids: bool = True,
        reconnect_delay: float = 0.0,
    ):
        self.nodes = nodes
        self.reconnect_delay = reconnect_delay
        self.channel = channel
        self.home = home
        self.current = home
        self.return_home = return_home
        self.settle = settle
        self.received: list[str] = []
        self.switches: list[tuple[str, str]] = []  # (from node, to node)
        # (monotonic time, node name, what): "got <id>", "connected (Last-Event-ID ...)", "ended: ..."
        self.timeline: list[tuple[float, str, str]] = []
        self.shared_ids = shared_ids
        self.last_event_id: str | None = None
        self._last_event_node: int | None = None  # the node that sent last_event_id
        self._stream: EventStream | None = None
        self._going_home = False  # the stream is closed on purpose, to return home
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if return_home:
            threading.Thread(target=self._watch_home, daemon=True).start()

    def wait_connected(self, timeout: float = 20) -> None:
        if not self._connected.wait(timeout):
            raise TimeoutError(f"subscriber on {self.channel} did not connect")

    def _connect(self, index: int) -> EventStream:
        last = self.last_event_id if self.shared_ids or self._last_event_node == index else None
        return self.nodes[index].events(self.channel, last_event_id=last, timeout=40)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._stream = self._connect(self.current)
            except (OSError, RuntimeError):
                self._move()
                time.sleep(0.2)
                continue
            self._connected.set()
            node = self.nodes[self.current].name
            self._note(node, f"connected (Last-Event-ID {self.last_event_id})")
            try:
                while True:
                    event = self._stream.next_event()
                    job_id = json.loads(event.data)["id"]
                    self.received.append(job_id)
                    self._note(node, f"got {job_id} (event id {event.id})")
                    self.last_event_id, self._last_event_node = event.id, self.current
            except (OSError, ValueError, AttributeError) as exc:
                # The node went away, or the stream was closed on purpose (from
                # another thread: http.client then finds its file gone).
                self._note(node, f"ended: {type(exc).__name__}: {exc}")
            finally:
                self._stream.close()
            if self._stopping.is_set():
                return
            if not self._going_home:
                self._move()
                self._stopping.wait(self.reconnect_delay)
            self._going_home = False

    def _note(self, node: str, what: str) -> None:
        self.timeline.append((time.monotonic(), node, what))

    def _move(self) -> None:
        before = self.current
        self.current = (self.current + 1) % len(self.nodes)
        self.switches.append((self.nodes[before].name, self.nodes[self.current].name))

    def _watch_home(self) -> None:
        healthy_since = None
        while not self._stopping.wait(0.2):
            if self.current == self.home:
                healthy_since = None
                continue
            if not self.nodes[self.home].healthy():
                healthy_since = None
                continue
            healthy_since = healthy_since or time.monotonic()
            if time.monotonic() - healthy_since >= self.settle and self._stream:
                self._going_home = True
                self.switches.append((self.nodes[self.current].name, self.nodes[self.home].name))
                self.current = self.home
                interrupt(self._stream)  # _run reconnects, to home, with Last-Event-ID
                healthy_since = None

    def wait_for(self, ids: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        wanted = set(ids)
        while not wanted <= set(self.received):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        self._stopping.set()
        if self._stream:
            interrupt(self._stream)
        self._thread.join(5)


def interrupt(stream: EventStream) -> None:
    """Ends a stream another thread is reading. close() alone does not: the
    reader's file object keeps the socket open and its recv() blocked; a
    shutdown wakes it up."""
    sock = stream._conn.sock
    if sock is None:  # a response read until close owns the socket
        sock = getattr(getattr(stream.response.fp, "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
    stream.close()


class HealthMonitor:
    """Polls /health of every push node from here, every `interval` seconds;
    `samples` lists (time, [up, up, ...])."""

    def __init__(self, nodes: list[RemotePushNode], interval: float = 0.05):
        self.nodes = nodes
        self.interval = interval
        self.samples: list[tuple[float, list[bool]]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.samples.append((time.monotonic(), [node.healthy(timeout=2) for node in self.nodes]))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def down_windows(self, start: float) -> str:
        """When each node was seen down, in seconds since `start` (a time.monotonic())."""
        windows = []
        for i, node in enumerate(self.nodes):
            since = None
            for moment, ups in self.samples:
                if not ups[i] and since is None:
                    since = moment
                elif ups[i] and since is not None:
                    windows.append((since, f"{node.name} down {since - start:.3f}-{moment - start:.3f}s"))
                    since = None
            if since is not None:
                windows.append((since, f"{node.name} down from {since - start:.3f}s"))
        return ", ".join(text for _, text in sorted(windows)) or "no node seen down"

    def moments_down(self) -> list[list[str]]:
        """For each sample with a node down, the names of the nodes down."""
        return [
            [node.name for node, up in zip(self.nodes, ups, strict=True) if not up]
            for _, ups in self.samples
            if not all(ups)
        ]


def connections(subscriber: FailoverSubscriber) -> list[tuple[float, str, list[str]]]:
    """The subscriber's connections in order: (when it connected, node, the ids it got there)."""
    segments: list[tuple[float, str, list[str]]] = []
    for moment, node, what in subscriber.timeline:
        if what.startswith("connected"):
            segments.append((moment, node, []))
        elif what.startswith("got ") and segments:
            segments[-1][2].append(what.split()[1])
    return segments


def repeats_on(segments: list[tuple[float, str, list[str]]], index: int) -> int:
    """How many of what connection `index` brought had come before it."""
    before = {job_id for _, _, got in segments[:index] for job_id in got}
    return sum(job_id in before for job_id in segments[index][2])


def describe_gaps(
    missing: list[str],
    produced: list[str],
    subscriber: FailoverSubscriber,
    start: float | None = None,
    around: int = 3,
) -> str:
    """For a failed check: where each missing message sat in the produced order, and what
    the subscriber saw (node, time since `start`, job numbers, reconnections) around it."""
    if not subscriber.timeline:
        return "no timeline"
    start = subscriber.timeline[0][0] if start is None else start
    index = {job_id: i for i, job_id in enumerate(produced)}

    def line(moment: float, node: str, what: str) -> str:
        job = what.split()[1] if what.startswith("got ") else None
        number = f" (job {index[job]})" if job in index else ""
        return f"{moment - start:.3f}s {node}: {what[:44]}{number}"

    lines = []
    for job_id in missing[:5]:
        i = index[job_id]
        near = set(produced[max(0, i - around) : i + around + 1])
        lines.append(f"missing {job_id}: job {i} of {len(produced)}")
        shown = [n for n, (_, _, what) in enumerate(subscriber.timeline) if any(x in what for x in near)]
        if not shown:
            continue
        first, last = max(0, shown[0] - 2), min(len(subscriber.timeline), shown[-1] + 3)
        lines += ["  " + line(*moment) for moment in subscriber.timeline[first:last]]
    # Each reconnection with the message just before it and the first after it.
    for n, moment in enumerate(subscriber.timeline):
        if not moment[2].startswith("got "):
            around_it = [m for m in subscriber.timeline[max(0, n - 1) : n + 2] if m is not moment]
            got = [line(*m) for m in around_it if m[2].startswith("got ")]
            lines.append(" | ".join([line(*moment), *got]))
    return "\n".join(lines)


def missing_and_order(produced: list[str], received: list[str]) -> tuple[list[str], bool, int]:
    """(ids never received, whether first arrivals keep the produced order, duplicates)."""
    seen: list[str] = []
    seen_set: set[str] = set()
    for job_id in received:
        if job_id not in seen_set:
            seen.append(job_id)
            seen_set.add(job_id)
    missing = [job_id for job_id in produced if job_id not in seen_set]
    in_order = [job_id for job_id in seen if job_id in set(produced)] == [
        job_id for job_id in produced if job_id in seen_set
    ]
    return missing, in_order, len(received) - len(seen)
