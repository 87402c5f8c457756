"""A push node on loopback for tests: nginx started from nginx/push-stream.conf.

The config is rendered from the one template the push_stream role uses, with the
role's defaults plus test overrides. The flavour is the role's default,
`push_stream`: nginx-push-stream-module from the Debian package
libnginx-mod-http-push-stream, which `make nginx-modules` installs on this
host (its path below is the package's); `nchan` (Debian's libnginx-mod-nchan) on
request.

    node = PushNode()            # or PushNode(flavour="nchan", overrides={...})
    node.start()
    node.publish("chat", "hello", event_id="42")
    node.stop()

Like a deployed node it has a public listener (`base_url`: the page and the
subscribers) and a cluster listener (`cluster_url`: /pub and /channels-stats, what
the glue is given). With `tls=ServerTLS(...)` the public listener is HTTPS with
HTTP/2 (`base_url` https://NAME:PORT) and the plain one (`plain_url`) redirects.

Plain module, no pytest dependency: tests import it and wrap it in fixtures.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.meta
import yaml

from support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "nginx" / "push-stream.conf"
ROLE_DEFAULTS = REPO / "ansible" / "roles" / "push_stream" / "defaults" / "main.yml"
# The key set of signed subscribe URLs, as the role writes it (an nginx include of
# subscribe_signature_key lines); nginx/push-stream.conf checks them with our module
# (nginx/subscribe-signature/, the package libnginx-mod-http-subscribe-signature that
# `make nginx-modules` builds and installs here): the role's
# push_stream_subscribe_signature_module_path.
KEY_SET_TEMPLATE = REPO / "ansible" / "roles" / "push_stream" / "templates" / "subscribe-keys.conf.j2"
SIGNATURE_MODULES = {
    "libnginx-mod-http-subscribe-signature (make nginx-modules)": Path(
        "/usr/lib/nginx/modules/ngx_http_subscribe_signature_module.so"
    ),
}
# The files the Debian packages install (the role's push_stream_module_path and
# push_stream_nchan_module_path).
MODULES = {
    "push_stream": Path("/usr/lib/nginx/modules/ngx_http_push_stream_module.so"),
    "nchan": Path("/usr/lib/nginx/modules/ngx_nchan_module.so"),
}
MODULE_PACKAGES = {"push_stream": "libnginx-mod-http-push-stream", "nchan": "libnginx-mod-nchan"}


def installed_module_version(flavour: str = "push_stream") -> str:
    """The installed version of the flavour's module package ("" if none). Ours carry
    "~rg" (and our patches); Debian's own do not."""
    return subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", MODULE_PACKAGES[flavour]],
        capture_output=True,
        text=True,
    ).stdout


def our_patch_missing(what_it_fixes: str) -> str | None:
    """Why a test of one of our module package's patches cannot run on this host, or None.
    Debian 13 hosts run Debian's own package (no "~rg" in its version), without our patches:
    `what_it_fixes` says what stays unfixed there."""
    version = installed_module_version()
    if "~rg" in version:
        return None
    return (
        f"{MODULE_PACKAGES['push_stream']} {version or '(not installed)'} is Debian's own package,"
        f" without our patch (Debian 13): {what_it_fixes}"
    )


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# --- rendering nginx/push-stream.conf ------------------------------------------


def default_flavour() -> str:
    """The push_stream role's default flavour: `push_stream`."""
    return yaml.safe_load(ROLE_DEFAULTS.read_text())["push_stream_flavour"]


def missing_module(flavour: str) -> str | None:
    """Why nginx cannot load `flavour`'s module here, or None when it can."""
    if MODULES[flavour].exists():
        return None
    how = "make nginx-modules" if flavour == "push_stream" else "make deps"
    return f"{MODULES[flavour]} is missing: install {MODULE_PACKAGES[flavour]} (`{how}`)"


def _comment(text: str) -> str:
    """Ansible's `comment` filter, enough for the template's header."""
    return "#\n" + "".join(f"# {line}\n" for line in text.splitlines()) + "#"


def _bool(value) -> bool:
    """Ansible's `bool` filter."""
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _version(value: str, other: str, operator: str = "==") -> bool:
    """Ansible's `version` test, for dotted numeric versions."""
    left, right = _version_key(value), _version_key(other)
    return {
        "<": left < right,
        "<=": left <= right,
        "==": left == right,
        "!=": left != right,
        ">=": left >= right,
        ">": left > right,
    }[operator]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters["comment"] = _comment
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = _bool
    env.tests["version"] = _version
    env.tests["match"] = lambda value, pattern: re.match(pattern, value) is not None
    return env


def installed_nginx_version() -> str:
    """`nginx -v` of this machine's nginx, e.g. "1.22.1" (as the role reads it)."""
    done = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    match = re.search(r"nginx/(\S+)", done.stderr + done.stdout)
    return match.group(1) if match else ""


def role_variables(overrides: dict | None = None, template: Path = TEMPLATE) -> dict:
    """The role's defaults with overrides applied, templated values resolved
    (as Ansible would) for every variable `template` (the nginx config) uses."""
    env = _environment()
    raw = yaml.safe_load(ROLE_DEFAULTS.read_text())
    raw["ansible_managed"] = "Rendered by tests/support/push_node.py from nginx/push-stream.conf"
    raw.update(overrides or {})
    resolved: dict = {}

    def resolve(name: str):
        if name not in resolved:
            value = raw[name]
            if isinstance(value, str) and "{" in value:
                names = jinja2.meta.find_undeclared_variables(env.parse(value))
                value = env.from_string(value).render({n: resolve(n) for n in names if n in raw})
                # Ansible turns rendered booleans back into booleans.
                value = {"True": True, "False": False}.get(value.strip(), value)
            resolved[name] = value
        return resolved[name]

    needed = jinja2.meta.find_undeclared_variables(env.parse(template.read_text()))
    return {name: resolve(name) for name in needed}


def render_config(overrides: dict | None = None) -> str:
    """nginx/push-stream.conf rendered with the role's defaults plus overrides."""
    return _environment().from_string(TEMPLATE.read_text()).render(role_variables(overrides))


def render_key_set(overrides: dict | None = None) -> str:
    """The signed subscribe URLs' key set, as the role writes it (push_stream_subscribe_keys)."""
    variables = role_variables(overrides, KEY_SET_TEMPLATE)
    return _environment().from_string(KEY_SET_TEMPLATE.read_text()).render(variables)


@dataclass
class ServerTLS:
    """What a test node serves over HTTPS: its certificate (full chain) and key,
    the CA certificate clients trust, and the name clients ask for."""

    certificate_path: Path
    key_path: Path
    trust_path: Path
    name: str = "localhost"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.trust_path))


def local_overrides(
    directory: Path,
    flavour: str,
    port: int,
    host: str = "127.0.0.1",
    cluster_port: int | None = None,
    tls: ServerTLS | None = None,
    tls_port: int | None = None,
) -> dict:
    """Settings that let nginx run from `directory` on loopback ports, unprivileged
    paths only, small enough for this machine's open-files limit."""
    running_as = pwd.getpwuid(os.geteuid()).pw_name
    overrides = {
        "push_stream_flavour": flavour,
        "push_stream_module_path": str(MODULES["push_stream"]),
        "push_stream_nchan_module_path": str(MODULES["nchan"]),
        "push_stream_nginx_version": installed_nginx_version(),
        # Workers run as whoever runs the tests (as root: root, so the temp
        # directory stays readable; unprivileged: nginx cannot switch users anyway).
        "push_stream_user": running_as if os.geteuid() == 0 else "",
        "push_stream_worker_processes": 2,
        "push_stream_worker_connections": 4096,
        "push_stream_worker_rlimit_nofile": 8192,
        "push_stream_pid_path": str(directory / "nginx.pid"),
        "push_stream_error_log": f"{directory / 'error.log'} info",
        "push_stream_access_log": str(directory / "access.log"),
        "push_stream_temp_path": str(directory / "tmp"),
        "push_stream_docroot": str(directory / "www"),
        "push_stream_listen": [f"{host}:{port}"],
        "push_stream_cluster_listen": [f"{host}:{cluster_port or free_port(host)}"],
        "push_stream_listen_backlog": 511,
        "push_stream_shared_memory_size": "32m",
        "push_stream_ping_interval": 10,
        "push_stream_tls_mode": "none",
        "push_stream_subscribe_keys_path": str(directory / "subscribe-keys.conf"),
    }
    if tls:
        overrides.update(
            {
                "push_stream_tls_mode": "files",
                "push_stream_tls_serving": True,
                "push_stream_tls_listen": [f"{host}:{tls_port or free_port(host)}"],
                "push_stream_tls_certificate_path": str(tls.certificate_path),
                "push_stream_tls_key_path": str(tls.key_path),
                "push_stream_tls_session_cache_size": "4m",
            }
        )
    return overrides


def _port(listen: list[str]) -> int:
    return int(str(listen[0]).split()[0].rsplit(":", 1)[-1])


# --- the node ------------------------------------------------------------------


class PushNode:
    """nginx serving the push node contract on `host:port` from a temp directory."""

    # The cluster listener speaks HTTPS (push_stream_cluster_tls); set per node.
    cluster_tls = False

    def __init__(
        self,
        flavour: str | None = None,
        overrides: dict | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: ServerTLS | None = None,
    ):
        self.flavour = flavour or default_flavour()
        if why := missing_module(self.flavour):
            raise RuntimeError(why)
        for package, module in SIGNATURE_MODULES.items():
            if not module.exists():
                raise RuntimeError(f"{module} is missing: install {package}")
        self.host = host
        self.port = port or free_port(host)
        self.name = f"{host}:{self.port}"
        self.tls = tls
        self.directory = Path(tempfile.mkdtemp(prefix=f"push-node-{self.flavour}-"))
        self.overrides = {**local_overrides(self.directory, self.flavour, self.port, host, tls=tls)}
        self.overrides.update(overrides or {})
        self.cluster_port = _port(self.overrides["push_stream_cluster_listen"])
        self.tls_port = _port(self.overrides["push_stream_tls_listen"]) if tls else None
        # The cluster listener over HTTPS as well (push_stream_cluster_tls).
        self.cluster_tls = bool(tls) and bool(self.overrides.get("push_stream_cluster_tls"))
        self.config_path = self.directory / "nginx.conf"
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """The public listener: the page and the subscribers (HTTPS when `tls`)."""
        if self.tls:
            return f"https://{self.tls.name}:{self.tls_port}"
        return self.plain_url

    @property
    def plain_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def cluster_url(self) -> str:
        """The cluster listener: what the glue publishes to (POST /pub), and the statistics
        (https://NAME:PORT with push_stream_cluster_tls)."""
        if self.cluster_tls:
            return f"https://{self.tls.name}:{self.cluster_port}"
        return f"http://{self.host}:{self.cluster_port}"

    @property
    def access_log(self) -> str:
        path = self.directory / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def pid(self) -> int | None:
        """The nginx master's process id while running."""
        return self._process.pid if self._process and self._process.poll() is None else None

    @property
    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def write_config(self) -> Path:
        (self.directory / "tmp").mkdir(exist_ok=True)
        (self.directory / "www").mkdir(exist_ok=True)
        self.write_key_set()
        self.config_path.write_text(render_config(self.overrides))
        return self.config_path

    def write_key_set(self, keys: list[dict] | None = None) -> Path:
        """The key set file (0600) from push_stream_subscribe_keys, or `keys` given now
        (nginx reads it at start and reload: `reload()` after changing it)."""
        if keys is not None:
            self.overrides["push_stream_subscribe_keys"] = keys
        path = Path(self.overrides["push_stream_subscribe_keys_path"])
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(render_key_set(self.overrides))
        return path

    def check_config(self) -> None:
        """`nginx -t` on the rendered config; raises with nginx's message."""
        self.write_config()
        self._nginx("-t")

    def start(self, timeout: float = 20) -> PushNode:
        self.check_config()
        self._process = subprocess.Popen(
            [NGINX, "-p", str(self.directory), "-c", str(self.config_path), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self._process.stderr.read().decode()}")
            try:
                if self.request("GET", "/health", timeout=1, listener="cluster")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer on {self.base_url}:\n{self.error_log}")

    def stop(self, timeout: float = 20) -> None:
        """Fast shutdown (SIGTERM): subscribers are disconnected, the store is lost."""
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process and self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def restart(self) -> PushNode:
        self.stop()
        return self.start()

    def reload(self, timeout: float = 20) -> list[int]:
        """Re-read the (re-rendered) config and certificates without dropping the
        master (SIGHUP, what `systemctl reload nginx` sends); returns the old
        workers' ids once new workers run. The old ones finish their connections
        gracefully meanwhile (`wait_for_old_workers`)."""
        self.check_config()
        before = set(self.worker_pids())
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while not (set(self.worker_pids()) - before):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no new nginx workers after the reload:\n{self.error_log}")
            time.sleep(0.05)
        return sorted(before)

    def wait_for_old_workers(self, old: list[int], timeout: float = 30) -> None:
        """Until the workers from before a reload have exited (from then on only
        the new config and certificate serve)."""
        deadline = time.monotonic() + timeout
        while set(old) & set(self.worker_pids()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"old nginx workers {old} still run:\n{self.error_log}")
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        """The master's children: its workers (and, after a reload, old ones shutting down)."""
        if not self.pid:
            return []
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def use_certificate(self, tls: ServerTLS) -> None:
        """Serve another certificate after the next reload (a renewal, a swap)."""
        self.tls = tls
        self.overrides["push_stream_tls_certificate_path"] = str(tls.certificate_path)
        self.overrides["push_stream_tls_key_path"] = str(tls.key_path)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PushNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _nginx(self, *args: str) -> None:
        done = subprocess.run(
            [NGINX, "-p", str(self.directory), "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nginx {' '.join(args)} failed:\n{done.stderr}")

    # --- plain HTTP ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict | None = None,
        timeout: float = 10,
        source: str | None = None,
        listener: str = "public",
    ) -> tuple[int, dict, bytes]:
        """One request; returns (status, headers, body). `listener`: "public" (HTTPS
        when the node has TLS), "plain" or "cluster". `source` binds the client to
        that local address (e.g. 127.0.0.2 to be a disallowed publisher)."""
        conn = self._connection(timeout, source, listener)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def _connection(
        self, timeout: float, source: str | None, listener: str = "public"
    ) -> http.client.HTTPConnection:
        source_address = (source, 0) if source else None
        tls_port = {"public": self.tls_port, "cluster": self.cluster_port if self.cluster_tls else None}
        if self.tls and tls_port.get(listener):
            return PinnedHTTPSConnection(
                self.tls.name,
                tls_port[listener],
                self.host,
                self.tls.client_context(),
                timeout,
                source_address,
            )
        port = self.cluster_port if listener == "cluster" else self.port
        return http.client.HTTPConnection(self.host, port, timeout=timeout, source_address=source_address)

    def healthy(self, timeout: float = 1) -> bool:
        """/health answers on the public listener (what a balancer would ask)."""
        try:
            return self.request("GET", "/health", timeout=timeout)[0] == 200
        except (OSError, http.client.HTTPException):  # refused, reset, cut short by a restart
            return False

    def publish(self, channel: str, text: str, event_id: str | None = None, source: str | None = None) -> int:
        """POST /pub?id=<channel>; returns the HTTP status (200/201/202 = stored)."""
        headers = {"Content-Type": "text/plain"}
        if event_id is not None:
            headers["Event-ID"] = event_id
        return self.request("POST", f"/pub?id={channel}", text, headers, source=source, listener="cluster")[0]

    def subscribers(self, channel: str) -> int:
        """Subscribers connected to `channel` now (0 for an unknown channel)."""
        if self.flavour == "push_stream":
            status, _, body = self.request("GET", f"/channels-stats?id={channel}", listener="cluster")
        else:  # nchan: a GET on the publisher location describes the channel
            status, _, body = self.request(
                "GET", f"/pub?id={channel}", headers={"Accept": "application/json"}, listener="cluster"
            )
        if status == 404:
            return 0
        if status != 200:
            raise RuntimeError(f"channel stats for {channel}: HTTP {status} {body!r}")
        return int(json.loads(body)["subscribers"])

    def wait_for_subscribers(self, channel: str, count: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.subscribers(channel) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} subscribers on {channel}")
            time.sleep(0.05)

    # --- subscribers ------------------------------------------------------------------

    def events(
        self,
        channel: str,
        last_event_id: str | None = None,
        timeout: float = 10,
        headers: dict | None = None,
    ) -> EventStream:
        """An open EventSource subscription to /ev/<channel>."""
        return EventStream(self, channel, last_event_id, timeout, headers)

    def long_poll(
        self, channel: str, headers: dict | None = None, timeout: float = 15
    ) -> tuple[int, dict, bytes]:
        """One long-poll request on /lp/<channel>: blocks until a message or timeout."""
        return self.request("GET", f"/lp/{channel}", headers=headers, timeout=timeout)

    def long_poll_in_background(self, channel: str, timeout: float = 15) -> Background:
        """Start a long-poll, wait until the node counts it, return its handle."""
        poll = Background(lambda: self.long_poll(channel, timeout=timeout))
        self.wait_for_subscribers(channel)
        return poll

    def websocket(self, channel: str, timeout: float = 10) -> WebSocket:
        """An open WebSocket subscription to /ws/<channel>."""
        return WebSocket(self, channel, timeout)


# --- protocol clients (stdlib only) -------------------------------------------------


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `address` for `name`: the name goes into SNI, the Host header and
    the certificate check, the TCP connection to the address (no DNS needed)."""

    def __init__(self, name, port, address, context, timeout, source_address=None):
        super().__init__(name, port, timeout=timeout, source_address=source_address, context=context)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout, self.source_address)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Event:
    id: str | None
    data: str
    event: str | None = None


class EventStream:
    """A minimal EventSource client: `next_event()` returns the next Event."""

    def __init__(
        self,
        node: PushNode,
        channel: str,
        last_event_id: str | None,
        timeout: float,
        headers: dict | None = None,
    ):
        self.node = node
        self.channel = channel
        headers = {"Accept": "text/event-stream", **(headers or {})}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._conn = node._connection(timeout, None)
        self._conn.request("GET", f"/ev/{channel}", headers=headers)
        self.response = self._conn.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"/ev/{channel}: HTTP {self.response.status}")
        self.headers = dict(self.response.getheaders())

    def next_event(self) -> Event:
        """Blocks until an event with data arrives; comments and pings are skipped.
        Raises TimeoutError (socket timeout) when none comes."""
        fields: dict[str, list[str]] = {}
        while True:
            line = self.response.readline()
            if not line:
                raise ConnectionError(f"/ev/{self.channel} closed")
            line = line.decode().rstrip("\r\n")
            if line == "":
                if "data" in fields:
                    ids = fields.get("id")
                    names = fields.get("event")
                    return Event(
                        ids[-1] if ids else None,
                        "\n".join(fields["data"]),
                        names[-1] if names else None,
                    )
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WebSocket:
    """A minimal WebSocket client that reads text frames: `receive()`."""

    def __init__(self, node: PushNode, channel: str, timeout: float):
        if node.tls:
            port, authority = node.tls_port, node.tls.name
            plain = socket.create_connection((node.host, port), timeout=timeout)
            self.sock = node.tls.client_context().wrap_socket(plain, server_hostname=authority)
        else:
            port, authority = node.port, node.host
            self.sock = socket.create_connection((node.host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/{channel} HTTP/1.1\r\nHost: {authority}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        head = self._read_until(b"\r\n\r\n").decode(errors="replace")
        if " 101 " not in head.split("\r\n", 1)[0]:
            raise RuntimeError(f"/ws/{channel}: no upgrade: {head!r}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("websocket closed")
        self._buffer += chunk

    def _take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def receive(self) -> str:
        """The next text message; pings and other control frames are skipped."""
        while True:
            first, second = self._take(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8))
            mask = self._take(4) if second & 0x80 else b""
            payload = self._take(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the server")
            if opcode == 0x1:
                return payload.decode()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Background:
    """Runs a blocking call in a thread; `result()` waits for and returns it."""

    def __init__(self, call):
        self._result = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call) -> None:
        try:
            self._result = call()
        except BaseException as error:  # handed to the caller of result()
            self._error = error

    def result(self, timeout: float = 30):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("background call still running")
        if self._error:
            raise self._error
        return self._result
