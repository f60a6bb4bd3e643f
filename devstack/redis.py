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


CLUSTER_NODES = ("redis-cluster-1", "redis-cluster-2", "redis-cluster-3")        # the primaries
CLUSTER_REPLICAS = ("redis-cluster-4", "redis-cluster-5", "redis-cluster-6")     # with --redis-replicas 1
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


def cluster_node_ok(service: Service, nodes: int = len(CLUSTER_NODES)) -> bool:
    """This node's CLUSTER INFO says `cluster_state:ok` and it knows the cluster's `nodes` nodes."""
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
    return (str(info.get("cluster_state")) == "ok" and int(info.get("cluster_known_nodes", 0)) == nodes
            and int(info.get("cluster_slots_assigned", 0)) == CLUSTER_SLOTS)


def replica_in_sync(service: Service) -> bool:
    """This Redis is a replica whose link to its primary is up (it has had its first full copy)."""
    import redis

    try:
        client = redis.Redis.from_url(service.address, socket_timeout=2, socket_connect_timeout=2)
        try:
            info = client.info("replication")
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def replica_of(services: dict[str, Service], primary: str) -> str | None:
    """The name of the node that replicates `primary` now (roles change with a failover)."""
    import redis

    port = services[primary].port
    for name, service in services.items():
        if not name.startswith("redis-cluster-") or name == primary:
            continue
        client = redis.Redis.from_url(service.address, socket_timeout=2, socket_connect_timeout=2)
        try:
            info = client.info("replication")
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
        if info.get("role") == "slave" and int(info.get("master_port", 0)) == port:
            return name
    return None


SENTINEL_MASTER = "engage"            # the name the local Sentinels monitor the primary by
SENTINEL_NODES = ("redis-primary", "redis-replica")
SENTINELS = ("redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")


def start_data_node(server: str, directory: Path, port: int, primary_port: int | None = None) -> Service:
    """A Redis of the Sentinel setup: the single Redis's durability, a replica of `primary_port` if given."""
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    follow = ["--replicaof", "127.0.0.1", str(primary_port)] if primary_port else []
    pid = spawn([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
                 "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
                 "--protected-mode", "yes", *follow], log_path, directory)
    return Service(directory.name, f"redis://127.0.0.1:{port}/0", pid, port, str(log_path))


def start_sentinel(server: str, directory: Path, port: int, primary_port: int) -> Service:
    """A Sentinel (`redis-server --sentinel`) watching the primary: it is judged down after 1 s
    without an answer, and two of the three Sentinels agreeing start a failover."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "sentinel.conf"      # the Sentinel rewrites it with what it learns
    config.write_text("\n".join([
        f"port {port}", "bind 127.0.0.1", f"dir {directory}", "protected-mode no",
        f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2",
        f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000",
        f"sentinel failover-timeout {SENTINEL_MASTER} 10000",
        f"sentinel parallel-syncs {SENTINEL_MASTER} 1", ""]))
    log_path = directory / "sentinel.log"
    pid = spawn([server, str(config), "--sentinel"], log_path, directory)
    return Service(directory.name, f"127.0.0.1:{port}", pid, port, str(log_path))


def sentinel_ok(service: Service) -> bool:
    """This Sentinel knows the primary, its replica and the other two Sentinels."""
    import redis

    host, port = service.address.rsplit(":", 1)
    try:
        client = redis.Redis(host=host, port=int(port), socket_timeout=2, socket_connect_timeout=2,
                             decode_responses=True)
        try:
            master = client.execute_command("SENTINEL", "MASTER", SENTINEL_MASTER)
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False
    info = master if isinstance(master, dict) else dict(zip(master[0::2], master[1::2]))
    return (int(info.get("num-slaves", 0)) >= 1 and int(info.get("num-other-sentinels", 0)) == len(SENTINELS) - 1
            and "s_down" not in str(info.get("flags", "")))
