"""The one config file (/etc/realtime-glue/glue.toml, or YAML): loading and checking.

Every problem is reported with the key that has it, e.g.
`pipelines.comments.concurrency: expected an integer >= 1, got 'many'`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from .channels import channel_problem
from .claim_linger import LONGEST as CLAIM_LINGER
from .claim_linger import MAX_LONGEST as MAX_CLAIM_LINGER
from .errors import ConfigError
from .http_client import ca_file_problem
from .partitions import partition_feed_names
from .registry import PRESETS, STAGES

DEFAULT_PATH = "/etc/realtime-glue/glue.toml"
REDIS_KEYS = (
    "url",
    "password_file",
    "timeout",
    # Sentinel: the primary of `service`, as these sentinels say.
    "sentinels",
    "service",
    "sentinel_password_file",
    "db",
    # Durable puts.
    "durable_replicas",
    "durable_timeout",
)
ENV_PATH = "REALTIME_GLUE_CONFIG"
# The push_stream role's push_stream_max_message_size (64k), the nodes' client_max_body_size.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
# Partitions per pipeline, at most: each held one costs its instance a claim loop and a connection.
MAX_PARTITIONS = 256


@dataclass
class PipelineConfig:
    name: str
    feed: str
    stages: list[str]
    preset: str
    concurrency: int
    mirror_feed: str
    # host:port of this pipeline's Prometheus endpoint, "" for none.
    metrics_listen: str = ""
    stage_options: dict[str, dict] = field(default_factory=dict)
    # The feed is read as this many partitions (feed.0 ... feed.N-1), each by one instance at a time.
    partitions: int = 1

    @property
    def feeds(self) -> list[str]:
        """The Thoonk feeds the pipeline reads: its feed, or its partitions' feeds."""
        return partition_feed_names(self.feed, self.partitions)


@dataclass
class ReadersConfig:
    """`realtime-glue readers` (glue-readers.service): reader counts across the push nodes."""

    # The push nodes' cluster URLs (where /channels-stats and /pub answer).
    nodes: list[str]
    # Seconds between two rounds of statistics.
    interval: float
    # The channel the counts are published on (never counted itself).
    channel: str
    # Seconds between two full snapshots (every channel with readers); changes go out each round.
    snapshot_interval: float
    # Seconds a node may take to answer.
    timeout: float
    # Largest message the nodes take (a snapshot is split into parts under it).
    max_message_size: int
    # Channels with a gauge of their own (the busiest); the totals cover every channel.
    top_channels: int
    # host:port of its Prometheus endpoint, "" for none.
    metrics_listen: str


@dataclass
class SubscribeConfig:
    """[subscribe]: signing subscribe URLs for private channels (see signing.py)."""

    # The key set (JSON, mode 0600) the push nodes hold too; "" = nothing can be signed.
    keys_file: str = ""
    # The key that signs channels no key is scoped to ("": the only unscoped key).
    key_id: str = ""
    # The push nodes' public address, what signed URLs start with ("": a path only).
    url: str = ""
    # The nodes' naming rule (push_stream_private_channel_prefixes): channels that need a signature.
    private_prefixes: tuple[str, ...] = ("private-", "firehose-")


@dataclass
class SentinelConfig:
    """[redis] sentinels, service: the glue follows that service's primary."""

    sentinels: list[tuple[str, int]]
    service: str
    password: str | None
    db: int


@dataclass
class GlueConfig:
    path: str
    redis_url: str
    redis_password: str | None
    # Seconds any Redis command may take before it counts as failed (a hung Redis).
    redis_timeout: float
    visibility_timeout: float
    max_failures: int
    claim_batch: int
    # The longest a job waits in the feed for others to be claimed with it (seconds; 0: never).
    claim_linger: float
    shutdown_grace: float
    # Seconds a part of the glue may be busy in one step before it counts as stuck.
    progress_timeout: float
    finish_notices: bool
    push_nodes: list[str]
    push_timeout: float
    # The nodes' push_stream_message_ttl: a backlog drops what is held longer.
    push_message_ttl: float
    # Messages a node's backlog holds at most; then the oldest are dropped (alerted).
    push_backlog_limit: int
    # The nodes' client_max_body_size in bytes: a larger message is refused before it is sent.
    push_max_message_size: int
    metrics_listen: str
    pipelines: dict[str, PipelineConfig]
    readers: ReadersConfig | None = None
    # The CA file https:// push nodes are checked against ("": the system's trust store).
    push_ca_file: str = ""
    subscribe: SubscribeConfig = field(default_factory=SubscribeConfig)
    # With Sentinel ([redis] sentinels): the service to follow; redis_url is unused.
    redis_sentinel: SentinelConfig | None = None
    # Durable puts (put(durable=True), enqueue --durable): replicas that must
    # have a put before it is acknowledged, and how long to wait for them.
    durable_replicas: int = 1
    durable_timeout: float = 2.0

    def pipeline(self, name: str) -> PipelineConfig:
        if name not in self.pipelines:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise ConfigError(f"pipelines.{name}", f"no such pipeline in {self.path} (declared: {known})")
        return self.pipelines[name]


def config_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get(ENV_PATH) or DEFAULT_PATH


def load_config(path: str | None = None) -> GlueConfig:
    path = config_path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    return parse_config(raw, path)


def parse_config(raw: bytes, path: str = "<config>") -> GlueConfig:
    if path.endswith((".yml", ".yaml")):
        import yaml

        try:
            data = yaml.safe_load(raw) or {}
        except yaml.YAMLError as exc:
            raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    else:
        try:
            data = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a table of sections, got {type(data).__name__}")
    return _Reader(data, path).glue_config()


class _Reader:
    def __init__(self, data: dict, path: str):
        self.data = data
        self.path = path

    def table(self, parent: dict, key: str, where: str, known: tuple[str, ...] | None) -> dict:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(where, f"expected a table, got {value!r}")
        if known is not None:
            for name in value:
                if name not in known:
                    raise ConfigError(f"{where}.{name}", f"unknown key (known: {', '.join(known)})")
        return value

    def value(self, table: dict, key: str, where: str, kind, default, check=None, hint=""):
        if key not in table:
            return default
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}", f"expected {hint or kind.__name__}, got {value!r}")
        if check is not None and not check(value):
            raise ConfigError(f"{where}.{key}", f"expected {hint}, got {value!r}")
        return value

    def glue_config(self) -> GlueConfig:
        top_keys = ("redis", "queue", "push", "metrics", "readers", "subscribe", "pipelines")
        for name in self.data:
            if name not in top_keys:
                raise ConfigError(name, f"unknown section (known: {', '.join(top_keys)})")
        redis = self.table(self.data, "redis", "redis", REDIS_KEYS)
        queue = self.table(
            self.data,
            "queue",
            "queue",
            (
                "visibility_timeout",
                "max_failures",
                "claim_batch",
                "claim_linger",
                "shutdown_grace",
                "finish_notices",
                "progress_timeout",
            ),
        )
        push = self.table(
            self.data,
            "push",
            "push",
            ("nodes", "timeout", "message_ttl", "backlog_limit", "max_message_size", "ca_file"),
        )
        metrics = self.table(self.data, "metrics", "metrics", ("listen",))
        pipelines = self.table(self.data, "pipelines", "pipelines", None)

        url = self.value(redis, "url", "redis", str, "redis://127.0.0.1:6379/0")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("redis.url", f"expected redis://, rediss:// or unix://, got {url!r}")
        password = self.secret(redis, "password_file", "redis")

        nodes = self.value(push, "nodes", "push", list, [])
        for index, node in enumerate(nodes):
            if not isinstance(node, str) or not node.startswith(("http://", "https://")):
                raise ConfigError(f"push.nodes[{index}]", f"expected an http(s):// URL, got {node!r}")
        ca_file = self.value(push, "ca_file", "push", str, "")
        if ca_file and (problem := ca_file_problem(ca_file)):
            raise ConfigError("push.ca_file", problem)
        listen = self.value(metrics, "listen", "metrics", str, "127.0.0.1:9310")
        if listen and not listen.rpartition(":")[2].isdigit():
            raise ConfigError("metrics.listen", f"expected host:port or empty, got {listen!r}")

        config = GlueConfig(
            path=self.path,
            redis_url=url,
            redis_password=password,
            redis_timeout=self.value(
                redis,
                "timeout",
                "redis",
                float,
                5.0,
                lambda v: v >= 2,
                "seconds >= 2 (above the 1 s wait for jobs)",
            ),
            visibility_timeout=self.value(
                queue, "visibility_timeout", "queue", float, 30.0, lambda v: v > 0, "seconds > 0"
            ),
            max_failures=self.value(
                queue, "max_failures", "queue", int, 5, lambda v: v >= 1, "an integer >= 1"
            ),
            claim_batch=self.value(
                queue, "claim_batch", "queue", int, 64, lambda v: v >= 1, "an integer >= 1"
            ),
            claim_linger=self.value(
                queue,
                "claim_linger",
                "queue",
                float,
                CLAIM_LINGER,
                lambda v: 0 <= v <= MAX_CLAIM_LINGER,
                f"seconds from 0 to {MAX_CLAIM_LINGER:g}",
            ),
            progress_timeout=self.value(
                queue, "progress_timeout", "queue", float, 60.0, lambda v: v > 0, "seconds > 0"
            ),
            shutdown_grace=self.value(
                queue, "shutdown_grace", "queue", float, 10.0, lambda v: v >= 0, "seconds >= 0"
            ),
            finish_notices=self.value(queue, "finish_notices", "queue", bool, True),
            push_nodes=nodes,
            push_timeout=self.value(push, "timeout", "push", float, 5.0, lambda v: v > 0, "seconds > 0"),
            push_message_ttl=self.value(
                push, "message_ttl", "push", float, 300.0, lambda v: v > 0, "seconds > 0"
            ),
            push_backlog_limit=self.value(
                push, "backlog_limit", "push", int, 100_000, lambda v: v >= 1, "an integer >= 1"
            ),
            push_max_message_size=self.value(
                push,
                "max_message_size",
                "push",
                int,
                DEFAULT_MAX_MESSAGE_SIZE,
                lambda v: v >= 1024,
                "bytes >= 1024 (the push nodes' client_max_body_size)",
            ),
            metrics_listen=listen,
            pipelines={},
            push_ca_file=ca_file,
            subscribe=self.subscribe(),
        )
        config.readers = self.readers(config)
        config.redis_sentinel = self.sentinel(redis)
        config.durable_replicas = self.value(
            redis, "durable_replicas", "redis", int, 1, lambda v: v >= 1, "an integer >= 1"
        )
        config.durable_timeout = self.value(
            redis,
            "durable_timeout",
            "redis",
            float,
            2.0,
            lambda v: 0 < v < config.redis_timeout,
            f"seconds > 0 and below [redis] timeout ({config.redis_timeout:g})",
        )
        for index, name in enumerate(sorted(pipelines)):
            pc = self.pipeline(name, pipelines, config)
            if pc.metrics_listen is None:
                # Several pipelines on one host each need a port: the base port
                # plus the pipeline's place in the sorted list of names.
                host, _, port = listen.rpartition(":")
                pc.metrics_listen = f"{host}:{int(port) + index}" if listen else ""
            config.pipelines[name] = pc
        return config

    def readers(self, config: GlueConfig) -> ReadersConfig:
        """[readers]: every key has a default, most of them from [push] and [metrics]."""
        known = (
            "nodes",
            "interval",
            "channel",
            "snapshot_interval",
            "timeout",
            "top_channels",
            "metrics_listen",
        )
        table = self.table(self.data, "readers", "readers", known)
        nodes = self.value(table, "nodes", "readers", list, config.push_nodes)
        for index, node in enumerate(nodes):
            if not isinstance(node, str) or not node.startswith(("http://", "https://")):
                raise ConfigError(f"readers.nodes[{index}]", f"expected an http(s):// URL, got {node!r}")
        interval = self.value(table, "interval", "readers", float, 1.0, lambda v: v >= 0.1, "seconds >= 0.1")
        channel = self.value(table, "channel", "readers", str, "readers")
        problem = channel_problem(channel)
        if problem:
            raise ConfigError("readers.channel", problem)
        snapshot_interval = self.value(
            table,
            "snapshot_interval",
            "readers",
            float,
            max(10.0, interval),
            lambda v: v >= interval,
            f"seconds >= interval ({interval:g})",
        )
        # Default: the host of [metrics] listen, the port below the pipelines' first.
        host, _, port = config.metrics_listen.rpartition(":")
        default_listen = f"{host}:{int(port) - 1}" if config.metrics_listen else ""
        listen = self.value(table, "metrics_listen", "readers", str, default_listen)
        if listen and not listen.rpartition(":")[2].isdigit():
            raise ConfigError("readers.metrics_listen", f"expected host:port or empty, got {listen!r}")
        return ReadersConfig(
            nodes=nodes,
            interval=interval,
            channel=channel,
            snapshot_interval=snapshot_interval,
            timeout=self.value(
                table, "timeout", "readers", float, config.push_timeout, lambda v: v > 0, "seconds > 0"
            ),
            max_message_size=config.push_max_message_size,
            top_channels=self.value(
                table, "top_channels", "readers", int, 100, lambda v: v >= 0, "an integer >= 0"
            ),
            metrics_listen=listen,
        )

    def subscribe(self) -> SubscribeConfig:
        table = self.table(
            self.data, "subscribe", "subscribe", ("keys_file", "key_id", "url", "private_prefixes")
        )
        url = self.value(table, "url", "subscribe", str, "")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError("subscribe.url", f"expected the nodes' public http(s):// address, got {url!r}")
        prefixes = self.value(
            table, "private_prefixes", "subscribe", list, list(SubscribeConfig.private_prefixes)
        )
        if not all(isinstance(p, str) and p for p in prefixes):
            raise ConfigError(
                "subscribe.private_prefixes", f"expected a list of non-empty strings, got {prefixes!r}"
            )
        return SubscribeConfig(
            keys_file=self.value(table, "keys_file", "subscribe", str, ""),
            key_id=self.value(table, "key_id", "subscribe", str, ""),
            url=url,
            private_prefixes=tuple(prefixes),
        )

    def secret(self, table: dict, key: str, where: str) -> str | None:
        """The content of the file `key` names (stripped), None when not given."""
        path = self.value(table, key, where, str, "")
        if not path:
            return None
        try:
            with open(path) as handle:
                return handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{where}.{key}", f"cannot read {path}: {exc.strerror}") from None

    def sentinel(self, redis: dict) -> SentinelConfig | None:
        """[redis] sentinels = ["host:port", ...] and service: Redis through Sentinel."""
        if "sentinels" not in redis:
            for key in ("service", "sentinel_password_file", "db"):
                if key in redis:
                    raise ConfigError(f"redis.{key}", "only used with [redis] sentinels")
            return None
        if "url" in redis:
            raise ConfigError("redis.url", "give url (one Redis) or sentinels (Sentinel), not both")
        listed = self.value(redis, "sentinels", "redis", list, [])
        if not listed:
            raise ConfigError("redis.sentinels", 'list at least one sentinel as "host:port"')
        sentinels = []
        for index, entry in enumerate(listed):
            host, _, port = entry.rpartition(":") if isinstance(entry, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"redis.sentinels[{index}]", f'expected "host:port", got {entry!r}')
            sentinels.append((host.strip("[]"), int(port)))
        if "service" not in redis:
            raise ConfigError("redis.service", "the Sentinel service name is needed with [redis] sentinels")
        return SentinelConfig(
            sentinels=sentinels,
            service=self.value(redis, "service", "redis", str, "", lambda v: bool(v), "a service name"),
            password=self.secret(redis, "sentinel_password_file", "redis"),
            db=self.value(redis, "db", "redis", int, 0, lambda v: v >= 0, "a database number >= 0"),
        )

    def _listen(self, table: dict, where: str) -> str | None:
        listen = self.value(table, "metrics_listen", where, str, None)
        if listen and not listen.rpartition(":")[2].isdigit():
            raise ConfigError(f"{where}.metrics_listen", f"expected host:port or empty, got {listen!r}")
        return listen

    def pipeline(self, name: str, pipelines: dict, config: GlueConfig) -> PipelineConfig:
        where = f"pipelines.{name}"
        known = (
            "feed",
            "preset",
            "stages",
            "concurrency",
            "mirror_feed",
            "metrics_listen",
            "partitions",
            *STAGES,
        )
        table = self.table(pipelines, name, where, known)
        preset = self.value(table, "preset", where, str, "")
        stages = self.value(table, "stages", where, list, [])
        if preset and stages:
            raise ConfigError(f"{where}.stages", "give either `preset` or `stages`, not both")
        if preset:
            if preset not in PRESETS:
                raise ConfigError(
                    f"{where}.preset", f"unknown preset {preset!r}; known: {', '.join(PRESETS)}"
                )
            stages = list(PRESETS[preset])
        if not stages:
            raise ConfigError(where, "needs `preset` or a non-empty `stages` list")
        for index, stage in enumerate(stages):
            if not isinstance(stage, str):
                raise ConfigError(f"{where}.stages[{index}]", f"expected a stage name, got {stage!r}")
        options = {stage: dict(self.table(table, stage, f"{where}.{stage}", None)) for stage in STAGES}
        for publisher in ("http", "firehose"):
            if publisher not in stages:
                continue
            # The [push] section, already checked, unless the pipeline names its own.
            own_nodes = "nodes" in options[publisher]
            options[publisher].setdefault("nodes", config.push_nodes)
            options[publisher].setdefault("timeout", config.push_timeout)
            options[publisher].setdefault("message_ttl", config.push_message_ttl)
            options[publisher].setdefault("backlog_limit", config.push_backlog_limit)
            options[publisher].setdefault("max_message_size", config.push_max_message_size)
            options[publisher].setdefault("ca_file", config.push_ca_file)
            if not options[publisher]["nodes"]:
                raise ConfigError(
                    f"{where}.{publisher}.nodes" if own_nodes else "push.nodes",
                    f"pipeline {name!r} publishes over {publisher} but no push node is listed",
                )
        if "validate" in stages:
            # What validate lets through must fit the push nodes.
            options["validate"].setdefault("max_body_bytes", config.push_max_message_size)
        return PipelineConfig(
            name=name,
            feed=self.value(table, "feed", where, str, name, lambda v: bool(v), "a feed name"),
            stages=stages,
            preset=preset,
            concurrency=self.value(
                table, "concurrency", where, int, 256, lambda v: v >= 1, "an integer >= 1"
            ),
            mirror_feed=self.value(table, "mirror_feed", where, str, ""),
            metrics_listen=self._listen(table, where),
            stage_options={k: v for k, v in options.items() if v},
            partitions=self.value(
                table,
                "partitions",
                where,
                int,
                1,
                lambda v: 1 <= v <= MAX_PARTITIONS,
                f"an integer from 1 to {MAX_PARTITIONS}",
            ),
        )
