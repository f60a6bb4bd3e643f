"""Redis from Debian's `redis-server`: the plain one, the secure one (TLS and an ACL user), and
the nodes of a local Redis Cluster."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from devstack.processes import Service, configured_port, ensure_binary, free_port, spawn
from devstack.tls import client_options, read_secret
from streams.state.redis_client import REDIS_COMMANDS

def start(directory: Path, log: Callable[[str], None], security: dict[str, str] | None = None) -> Service:
    if security:
        return _start_secure(directory, log, security)
    external = os.environ.get("ENGAGE_REDIS_URL")
    if external:
        return Service("redis", external)
    server = ensure_binary("redis-server", "redis-server", log)
    port = configured_port("ENGAGE_REDIS_PORT")
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    pid = spawn(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
         "--maxmemory-policy", "noeviction"],
        log_path, directory,
    )
    return Service("redis", f"redis://127.0.0.1:{port}/0", pid, port, str(log_path))


def _start_secure(directory: Path, log: Callable[[str], None], security: dict[str, str]) -> Service:
    """TLS only (`port 0`), server authentication only, one ACL user (REDIS_COMMANDS on every key),
    the default user off.

    The settings are in a 0600 config file, so the password is not on the command line.
    """
    server = ensure_binary("redis-server", "redis-server", log)
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "redis.conf"
    config.touch(mode=0o600)
    config.chmod(0o600)
    config.write_text("\n".join([
        "port 0", f"tls-port {port}", "bind 127.0.0.1", "protected-mode yes",
        f"tls-cert-file {security['server_cert']}", f"tls-key-file {security['server_key']}",
        f"tls-ca-cert-file {security['ca_file']}", "tls-auth-clients no",
        "user default off",
        f"user {security['redis_username']} on >{read_secret(security['redis_password_file'])} ~* -@all "
        + " ".join(f"+{command}" for command in REDIS_COMMANDS),
        f"dir {directory}", "appendonly yes", 'save ""', "daemonize no", "maxmemory-policy noeviction", "",
    ]))
    log_path = directory / "redis.log"
    pid = spawn([server, str(config)], log_path, directory)
    return Service("redis", f"rediss://127.0.0.1:{port}/0", pid, port, str(log_path))


def ready(service: Service, security: dict[str, str] | None = None) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(service.address, socket_timeout=2, socket_connect_timeout=2,
                                      **client_options(service, security, "redis"))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


CLUSTER_NODES = ("redis-cluster-1", "redis-cluster-2", "redis-cluster-3")
CLUSTER_SLOTS = 16384


def start_cluster_node(server: str, directory: Path, port: int, bus_port: int) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    pid = spawn(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--cluster-enabled", "yes",
         "--cluster-config-file", str(directory / "nodes.conf"), "--cluster-port", str(bus_port),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction",
         "--daemonize", "no", "--protected-mode", "yes"],
        log_path, directory,
    )
    return Service(directory.name, f"redis://127.0.0.1:{port}", pid, port, str(log_path))


def cluster_node_ok(service: Service) -> bool:
    """This node's CLUSTER INFO says `cluster_state:ok` and it knows every node of the cluster."""
    import redis

    try:
        client = redis.Redis.from_url(service.address, socket_timeout=2, socket_connect_timeout=2)
        try:
            raw = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False
    info = raw if isinstance(raw, dict) else dict(
        line.split(":", 1) for line in (raw.decode() if isinstance(raw, bytes) else raw).splitlines() if ":" in line)
    return (str(info.get("cluster_state")) == "ok" and int(info.get("cluster_known_nodes", 0)) == len(CLUSTER_NODES)
            and int(info.get("cluster_slots_assigned", 0)) == CLUSTER_SLOTS)
