"""What the readers unit asks of one push node, on its cluster listener (the URL the glue
publishes to): its readers per channel, and a publish on the readers channel.

Readers: `GET /channels-stats?id=ALL` (push-stream) answers one entry per channel,
`{"channel": "demo", "published_messages": 3, "stored_messages": 3, "subscribers": 2}`.
push-stream writes a channel's name into that JSON as it is, unescaped, and a
browser creates a channel by subscribing to it: a name with a quote or a backslash
makes the whole answer invalid JSON. So each entry is read on its own, by its exact
shape, and only names the glue could publish to (channels.py) are counted (nothing
is ever published to the others). A name crafted to contain a whole entry of its own
could not be told from a real one: that is why the node's subscriber locations
(nginx/push-stream.conf) accept only those names in the first place.

One keep-alive connection per node: a round is one GET, and a publish one POST.
Under the CLI's gevent monkey-patching, http.client is cooperative.
"""

from __future__ import annotations

import http.client
import re
import ssl
from urllib.parse import quote, urlsplit

from ..channels import channel_problem, event_id_problem
from ..errors import NodeUnreadable

DELIVERED = (200, 201, 202)
_ENTRY = re.compile(
    rb'\{"channel": "([A-Za-z0-9_\-:@.=]{1,128})", "published_messages": \d+,'
    rb' "stored_messages": \d+, "subscribers": (\d+)\}'
)
_STATS = re.compile(rb'"infos": \[')


def parse_channel_readers(body: bytes) -> dict[str, int]:
    """Subscribers per channel from push-stream's `?id=ALL` statistics (channels with none left out)."""
    if not _STATS.search(body):
        raise ValueError(f"not push-stream's per-channel statistics: {body[:80]!r}")
    readers: dict[str, int] = {}
    for match in _ENTRY.finditer(body):
        channel, subscribers = match.group(1).decode(), int(match.group(2))
        if subscribers > 0 and channel_problem(channel, wildcard_prefix="") is None:
            readers[channel] = readers.get(channel, 0) + subscribers
    return readers


class NodeClient:
    def __init__(self, url: str, timeout: float = 5.0, ca_file: str | None = None):
        """`ca_file`: what an https:// node's certificate is checked against ([push] ca_file;
        None: the system's trust store)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"push node URL must be http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        # How the node is named in logs and metrics, as the glue names it: host:port.
        self.label = parts.netloc
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._tls = ssl.create_default_context(cafile=ca_file or None) if self._https else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None

    def channel_readers(self) -> dict[str, int]:
        """The node's subscribers per channel now; raises NodeUnreadable."""
        status, body = self._request("GET", "/channels-stats?id=ALL", None, {"Accept": "application/json"})
        if status != 200:
            raise NodeUnreadable(f"{self.label}: /channels-stats answered HTTP {status}")
        try:
            return parse_channel_readers(body)
        except ValueError as exc:
            raise NodeUnreadable(f"{self.label}: {exc}") from None

    def publish(self, channel: str, event_id: str, body: bytes) -> None:
        """POST one message with its Event-ID; raises NodeUnreadable unless the node stored it."""
        problem = channel_problem(channel, wildcard_prefix="") or event_id_problem(event_id)
        if problem:
            raise ValueError(problem)
        headers = {"Content-Type": "application/json", "Event-ID": event_id}
        status, answer = self._request("POST", f"/pub?id={quote(channel, safe=':@=')}", body, headers)
        if status not in DELIVERED:
            raise NodeUnreadable(f"{self.label}: /pub answered HTTP {status}: {answer[:120]!r}")

    def _request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        conn = self._conn or self._connect()
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise NodeUnreadable(f"{self.label}: {type(exc).__name__}: {exc}") from None
        if response.will_close:
            self.close()
        else:
            self._conn = conn
        return response.status, data

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._tls
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
