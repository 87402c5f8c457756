"""A Redis Sentinel deployment on loopback, for tests and the failover bench: a
primary, its replicas and three sentinels, each a real redis-server process on a
free port, configured as the redis role configures them (passwords on both
ports, min-replicas-to-write fencing)."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from realtime_glue.redis_connection import SentinelAnswer, choose_primary, parse_master_state
from support.redis_server import REDIS_SERVER, RedisProcess, RedisServer

SERVICE = "realtime-glue"
# No spaces or quotes: Redis 7.0's sentinel writes these back to its file unquoted
# (sentinel-pass, auth-pass), and could not read such a file again (the redis role
# refuses such passwords in the sentinel topology).
PASSWORD = "data-port-secret"
SENTINEL_PASSWORD = "sentinel-port-secret"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SentinelProcess(RedisProcess):
    """One redis-sentinel: a config file of its own (it rewrites it) and a port."""

    log_name = "sentinel.log"

    def __init__(self, primary_port: int, service: str, password: str, sentinel_password: str, options: dict):
        super().__init__("glue-sentinel-", sentinel_password)
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            f"dir {self.dir}",
            f"logfile {self.dir / self.log_name}",
            f"requirepass {_quoted(sentinel_password)}",
            f"sentinel sentinel-pass {_quoted(sentinel_password)}",
            f"sentinel monitor {service} 127.0.0.1 {primary_port} 2",
            f"sentinel auth-pass {service} {_quoted(password)}",
            *(f"sentinel {key} {service} {value}" for key, value in options.items()),
        ]
        (self.dir / "sentinel.conf").write_text("\n".join(lines) + "\n")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10) -> SentinelProcess:
        config = str(self.dir / "sentinel.conf")
        self._launch([REDIS_SERVER, config, "--sentinel", "--daemonize", "no"], timeout)
        return self


class SentinelDeployment:
    """`replicas + 1` redis-servers (the first starts as the primary) and
    `sentinels` sentinels watching them as `service`."""

    def __init__(
        self,
        replicas: int = 2,
        sentinels: int = 3,
        service: str = SERVICE,
        password: str = PASSWORD,
        sentinel_password: str = SENTINEL_PASSWORD,
        down_after_ms: int = 1000,
        min_replicas_to_write: int = 1,
        min_replicas_max_lag: int = 10,
    ):
        self.service = service
        self.password = password
        self.sentinel_password = sentinel_password
        fencing = [
            "--masterauth", password,
            "--min-replicas-to-write", str(min_replicas_to_write),
            "--min-replicas-max-lag", str(min_replicas_max_lag),
        ]  # fmt: skip
        first = RedisServer(appendonly=True, password=password, extra_args=fencing)
        self.servers = [first] + [
            RedisServer(
                appendonly=True,
                password=password,
                extra_args=[*fencing, "--replicaof", "127.0.0.1", str(first.port)],
            )
            for _ in range(replicas)
        ]
        options = {"down-after-milliseconds": down_after_ms, "failover-timeout": 10_000}
        self.sentinels = [
            SentinelProcess(first.port, service, password, sentinel_password, options)
            for _ in range(sentinels)
        ]

    def start(self, timeout: float = 30) -> SentinelDeployment:
        for server in self.servers:
            server.start()
        for sentinel in self.sentinels:
            sentinel.start()
        # Ready once every sentinel knows every replica and the other sentinels.
        deadline = time.monotonic() + timeout
        while not self._settled():
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinels did not settle: {self.sentinels[0].log()}")
            time.sleep(0.1)
        return self

    def _settled(self) -> bool:
        """Every replica in sync and counted good by the primary (min-replicas-to-write),
        every sentinel aware of every replica and of the other sentinels."""
        try:
            info = self.servers[0].client(socket_timeout=1).info("replication")
        except redis.RedisError:
            return False
        if int(info.get("min_slaves_good_slaves", info.get("connected_slaves", 0))) < len(self.servers) - 1:
            return False
        for sentinel in self.sentinels:
            try:
                state = self.master_state(sentinel)
            except redis.RedisError:
                return False
            if int(state["num-slaves"]) < len(self.servers) - 1:
                return False
            if int(state["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
        return True

    def master_state(self, sentinel: SentinelProcess) -> dict[str, str]:
        reply = sentinel.client(socket_timeout=2).execute_command("SENTINEL", "MASTER", self.service)
        return parse_master_state(reply)

    def redis_table(self, directory: Path) -> str:
        """The glue's [redis] table for this deployment (password files written to `directory`)."""
        (directory / "redis.password").write_text(self.password + "\n")
        (directory / "sentinel.password").write_text(self.sentinel_password + "\n")
        listed = ", ".join(f'"{address}"' for address in self.sentinel_addresses)
        return (
            f"sentinels = [{listed}]\n"
            f'service = "{self.service}"\n'
            f'password_file = "{directory / "redis.password"}"\n'
            f'sentinel_password_file = "{directory / "sentinel.password"}"\n'
        )

    @property
    def sentinel_addresses(self) -> list[str]:
        return [sentinel.address for sentinel in self.sentinels]

    def primary_port(self) -> int:
        """The primary as the sentinels say (as the glue reads them); 0 for none."""
        answers = []
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            try:
                state = self.master_state(sentinel)
            except redis.RedisError:
                continue
            answers.append(
                SentinelAnswer(
                    sentinel.address,
                    ("127.0.0.1", int(state["port"])),
                    int(state["config-epoch"]),
                    state["flags"],
                )
            )
        chosen = choose_primary(answers)
        return chosen.primary[1] if chosen else 0

    def primary(self) -> RedisServer:
        port = self.primary_port()
        return next(server for server in self.servers if server.port == port)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary's redis-server; it stays down (see `restart`)."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_for_new_primary(self, old: RedisServer, timeout: float = 30) -> RedisServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port and port != old.port:
                return self.primary()
            time.sleep(0.05)
        raise TimeoutError(f"no failover from port {old.port}: {self.sentinels[0].log()}")

    def restart(self, server: RedisServer) -> None:
        """Start a killed server again with its first options (as a host's
        redis.conf would), whatever it was before; the sentinels reconfigure it."""
        server.start()

    def wait_until_replica_of(self, server: RedisServer, primary: RedisServer, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            role = server.client(socket_timeout=1).execute_command("ROLE")
            if role[0] == b"slave" and int(role[2]) == primary.port and role[3] == b"connected":
                return
            time.sleep(0.1)
        raise TimeoutError(f"port {server.port} did not become a replica of {primary.port}")

    def cleanup(self) -> None:
        for sentinel in self.sentinels:
            sentinel.cleanup()
        for server in self.servers:
            server.cleanup()
