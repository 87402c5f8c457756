"""Across hosts: who may publish, read channel statistics and reach Redis."""

from __future__ import annotations

import shlex
import socket


def status_from(host, url: str, method: str = "GET") -> int:
    """The HTTP status of `url` requested from `host` (curl on it)."""
    out = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' -X {method} --data-raw x '{url}'", check=False)
    return int(out.stdout or 0)


def test_only_the_glue_node_may_publish(cluster, push_nodes, channel):
    others = [host for host in cluster.push_hosts]
    for node in push_nodes:
        pub = f"{node.cluster_url}/pub?id={channel}"
        # From this machine (the docker bridge's gateway): outside the allowed networks.
        assert node.publish(channel, "from outside") == 403
        # The public listener has no publisher at all.
        assert node.request("POST", f"/pub?id={channel}", "public")[0] == 404
        # From the glue node: allowed.
        assert status_from(cluster.glue, pub, "POST") in (200, 201, 202)
        # From the other push node: a host of the cluster, but not a publisher.
        other = next(host for host in others if host.address != node.host)
        assert status_from(other, pub, "POST") == 403


def test_channel_statistics_are_restricted_like_the_publisher(cluster, push_nodes):
    for node in push_nodes:
        assert node.request("GET", "/channels-stats", listener="cluster")[0] == 403
        assert node.request("GET", "/channels-stats")[0] == 404
        assert status_from(cluster.glue, f"{node.cluster_url}/channels-stats") == 200
        other = next(host for host in cluster.push_hosts if host.address != node.host)
        assert status_from(other, f"{node.cluster_url}/channels-stats") == 403


def test_redis_refuses_clients_without_the_password(cluster):
    redis_host = cluster.group("redis")[0]
    without = redis_host.run("redis-cli -h 127.0.0.1 ping", check=False)
    assert "NOAUTH" in without.stdout + without.stderr
    with_password = redis_host.run(
        "REDISCLI_AUTH=$(cat /etc/realtime-glue/redis.password) redis-cli -h 127.0.0.1 ping"
    )
    assert with_password.stdout.strip() == "PONG"


def ping_reply_from(host, address: str, port: int) -> str:
    """What a PING without a password gets from `host` ('' when no connection is made)."""
    # 7 bytes: "-NOAUTH" (head returns at once; the server keeps the connection open).
    command = f"exec 3<>/dev/tcp/{address}/{port}; printf 'PING\\r\\n' >&3; head -c 7 <&3"
    return host.run(f"timeout 5 bash -c {shlex.quote(command)}", check=False).stdout


def ping_reply_from_here(address: str, port: int) -> str:
    with socket.socket() as probe:
        probe.settimeout(5)
        if probe.connect_ex((address, port)) != 0:
            return ""
        probe.sendall(b"PING\r\n")
        return probe.recv(40).decode(errors="replace")


def test_redis_answers_push_nodes_and_outside_only_with_the_password(cluster):
    """A single Redis listens on its host's loopback only: nothing connects. Replicated
    (Sentinel), the queue nodes reach each other, so both ports listen on the cluster
    network too: a client without the password gets only NOAUTH, on either port."""
    replicated = len(cluster.group("redis")) > 1
    ports = [6379, 26379] if replicated else [6379]
    for redis_host in cluster.group("redis"):
        for port in ports:
            replies = {
                push.name: ping_reply_from(push, redis_host.address, port) for push in cluster.push_hosts
            }
            replies["this machine"] = ping_reply_from_here(redis_host.address, port)
            for where, reply in replies.items():
                allowed = reply.startswith("-NOAUTH") if replicated and reply else reply == ""
                assert allowed, f"{where} -> {redis_host.name}:{port} without a password: {reply!r}"
