"""Across hosts: who may publish, read channel statistics and reach Redis."""

from __future__ import annotations

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


def test_redis_is_not_reachable_from_push_nodes_or_from_outside(cluster):
    redis_host = cluster.group("redis")[0]
    for push in cluster.push_hosts:
        probe = push.run(f"timeout 5 bash -c '</dev/tcp/{redis_host.address}/6379'", check=False)
        assert probe.returncode != 0, f"{push.name} reaches Redis on {redis_host.address}"
    with socket.socket() as probe:
        probe.settimeout(5)
        assert probe.connect_ex((redis_host.address, 6379)) != 0
