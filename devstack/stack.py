"""The local service stack, provisioned by the project itself (no Docker engine needed).

Developer infrastructure, outside the product: the CLI, the demo, the tests and the
benchmarks use it; the worker never imports it (the CLI passes its addresses in as
settings defaults: `local_addresses`). One module per service: `devstack.kafka`,
`devstack.redis`, `devstack.prometheus`, the secure stack's material in `devstack.tls`,
processes and ports in `devstack.processes`; this module composes them.


* Kafka 3.9 in KRaft mode (one combined broker + controller), from its Maven Central
  jars resolved by `mvn` into a cache and run on the machine's JDK.
* `up(directory, brokers=3)`: three combined brokers + controllers instead (one quorum),
  services `kafka-1..3`, each with its own directory, ports and log, and the internal topics
  replicated three times with `min.insync.replicas=2` (`devstack.kafka.CLUSTER_BROKER_SETTINGS`);
  `stack.kafka_bootstrap` lists all three, and `restart(stack, "kafka-2", kill=True)` takes
  one down. Plain listeners only.
* Redis from Debian's `redis-server` (or an already running one: ENGAGE_REDIS_URL).
* Prometheus with promtool from Debian's `prometheus`, only when asked for.
* `cluster_up(directory, replicas=0|1)`: a Redis Cluster of three masters (and a replica each)
  from the same `redis-server` in cluster mode, made with `redis-cli --cluster create`; it joins
  the stack in `directory` (services `redis-cluster-1..3`, replicas `redis-cluster-4..6`), and
  any node's URL is a client's startup node.
* `sentinel_up(directory)`: a primary and its replica (`redis-primary`, `redis-replica`) watched
  by three Sentinels (`redis-sentinel-1..3`, `redis-server --sentinel`), which promote the
  replica when the primary stops answering for a second: `stack.redis_sentinels`.
* `up(directory, secure=True)`: the same Kafka and Redis, locked down: Kafka's client
  listener is SASL_SSL (SCRAM-SHA-512 users created at format time), Redis listens on TLS
  only with an ACL user and the default user disabled; a CA and a server certificate
  (SAN 127.0.0.1, localhost) are made with openssl, passwords are random, in 0600 files.

Every step is idempotent: downloads are cached, a running healthy stack is reused,
ports are free ones unless configured (ENGAGE_KAFKA_PORT, ENGAGE_REDIS_PORT,
ENGAGE_PROMETHEUS_PORT), readiness is checked by talking to each service, and `down`
stops the processes cleanly (TERM, then KILL after a grace period). The state lives in
`<stack dir>/stack.json`, so scripts and tests can find a running stack.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from devstack import kafka, redis
from devstack import prometheus as prometheus_service
from devstack.kafka import BROKER_SETTINGS, CLUSTER_BROKER_SETTINGS, CLUSTER_BROKERS, KAFKA_VERSION, kafka_libs
from devstack.processes import (READY_TIMEOUT_S, Service, StackError, ensure_binary, free_port, free_ports, reap,
                                spawn, stop, stop_all, wait_ready)
from devstack.redis import CLUSTER_NODES, CLUSTER_REPLICAS, SENTINEL_MASTER, SENTINEL_NODES, SENTINELS
from devstack.tls import secure_material, security_env

__all__ = ["BROKER_SETTINGS", "CLUSTER_BROKERS", "CLUSTER_BROKER_SETTINGS", "CLUSTER_NODES", "CLUSTER_REPLICAS",
           "KAFKA_VERSION", "Service", "Stack", "StackError", "cluster_down",
           "cluster_up", "down", "ensure_binary", "free_port", "kafka_libs", "local_addresses", "restart",
           "secure_stack_dir", "sentinel_down", "sentinel_up", "set_scrape_targets", "stack_dir", "status", "up"]

ROOT = Path(__file__).resolve().parents[1]
BROKER_NAMES = kafka.cluster_broker_names(CLUSTER_BROKERS)   # a three-broker stack's Kafka services


def stack_dir() -> Path:
    return Path(os.environ.get("ENGAGE_STACK_DIR", ROOT / ".engage" / "stack"))


def secure_stack_dir() -> Path:
    """Where `./engage stack up --secure` keeps its state: next to the plain stack's."""
    plain = stack_dir()
    return plain.with_name(plain.name + "-secure")


@dataclass
class Stack:
    directory: str
    services: dict[str, Service] = field(default_factory=dict)
    security: dict[str, str] = field(default_factory=dict)   # secure stack: CA, users, password files

    def client_env(self) -> dict[str, str]:
        """The ENGAGE_* settings of a client of this stack (passwords by file, never inline)."""
        return {"ENGAGE_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "ENGAGE_REDIS_URL": self.redis_url,
                **security_env(self.security)}

    @property
    def kafka_bootstrap(self) -> str:
        """The one broker's address, or every broker's of a cluster (host:port,host:port,...)."""
        if "kafka" in self.services:
            return self.services["kafka"].address
        brokers = self.kafka_brokers
        if not brokers:
            raise KeyError("kafka")
        return ",".join(self.services[name].address for name in brokers)

    @property
    def kafka_brokers(self) -> list[str]:
        """The names of the Kafka services: ["kafka"], or ["kafka-1", "kafka-2", "kafka-3"] (empty: none)."""
        return [name for name in ("kafka", *BROKER_NAMES) if name in self.services]

    @property
    def redis_url(self) -> str:
        return self.services["redis"].address

    @property
    def prometheus_url(self) -> str | None:
        service = self.services.get("prometheus")
        return service.address if service else None

    @property
    def redis_cluster_url(self) -> str | None:
        """The local Redis Cluster's first node, a client's startup node (None: no cluster)."""
        node = self.services.get(CLUSTER_NODES[0])
        return node.address if node else None

    @property
    def redis_sentinels(self) -> str | None:
        """The local Sentinels' host:port list (None: no Sentinel setup); the primary's name is
        `devstack.redis.SENTINEL_MASTER`."""
        found = [self.services[name].address for name in SENTINELS if name in self.services]
        return ",".join(found) or None

    def to_json(self) -> dict[str, object]:
        return {
            "directory": self.directory,
            "kafka_bootstrap": self.kafka_bootstrap if self.kafka_brokers else None,
            "redis_url": self.services["redis"].address if "redis" in self.services else None,
            "prometheus_url": self.prometheus_url,
            **({"redis_cluster_url": self.redis_cluster_url} if self.redis_cluster_url else {}),
            **({"redis_sentinels": self.redis_sentinels, "redis_sentinel_master": SENTINEL_MASTER}
               if self.redis_sentinels else {}),
            "services": {name: asdict(s) for name, s in self.services.items()},
            **({"security": self.security, "client_env": security_env(self.security)} if self.security else {}),
        }

    def save(self) -> None:
        path = Path(self.directory) / "stack.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path | None = None) -> Stack | None:
        directory = directory or stack_dir()
        path = directory / "stack.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(str(directory), {name: Service(**s) for name, s in raw["services"].items()},
                   raw.get("security") or {})


# --- public operations ------------------------------------------------------------------


def up(
    directory: Path | None = None,
    prometheus: bool = False,
    log: Callable[[str], None] = lambda _: None,
    secure: bool = False,
    brokers: int | None = None,
) -> Stack:
    """Start (or reuse) Kafka and Redis, and Prometheus when asked; return their addresses.

    `secure`: Kafka on SASL_SSL with SCRAM users and Redis on TLS with an ACL user (see the
    module notes); use a directory of its own (`secure_stack_dir()`), and `client_env()`.
    `brokers`: 1 (one combined broker, service `kafka`) or 3 (a KRaft cluster, `kafka-1..3`);
    None keeps what the directory's stack has (1 for a new one). A stack is not changed from one
    to the other in place: `down` it first.
    """
    directory = directory or stack_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stack = Stack.load(directory) or Stack(str(directory))
    stack.directory = str(directory)
    has = CLUSTER_BROKERS if any(name in stack.services for name in BROKER_NAMES) else (
        1 if "kafka" in stack.services else None)
    count = brokers or has or 1
    if count not in (1, CLUSTER_BROKERS):
        raise StackError(f"a local Kafka has 1 or {CLUSTER_BROKERS} brokers (asked for {count})")
    if has and count != has:
        raise StackError(f"{directory} holds a {has}-broker Kafka: stop it first (`./engage stack down`) "
                         f"to start {count}")
    if count > 1 and (secure or stack.security):
        raise StackError(f"the {CLUSTER_BROKERS}-broker Kafka is plain only, not the secure stack")
    if secure:
        stack.security = secure_material(directory / "tls", log)
    elif stack.security:
        raise StackError(f"{directory} holds a secure stack: use up(directory, secure=True)")
    sec = stack.security or None

    if count > 1:
        _cluster_kafka_up(stack, directory, log)
    starters: list[tuple[str, Callable[[Path, Callable[[str], None]], Service], Callable[[Service], bool]]] = [
        *([("kafka", partial(kafka.start, security=sec), partial(kafka.ready, security=sec))] if count == 1 else []),
        ("redis", partial(redis.start, security=sec), partial(redis.ready, security=sec)),
    ]
    if prometheus:
        starters.append(("prometheus", prometheus_service.start, prometheus_service.ready))
    for name, start, ready in starters:
        existing = stack.services.get(name)
        if existing and existing.alive() and ready(existing):
            log(f"{name}: reusing {existing.address}")
            continue
        if existing and existing.pid and existing.alive():
            stop(existing)
        service = start(directory / name, log)
        stack.services[name] = service
        stack.save()
        wait_ready(service, ready)
        log(f"{name}: ready at {service.address}")
    stack.save()
    return stack


def _cluster_kafka_up(stack: Stack, directory: Path, log: Callable[[str], None]) -> None:
    """Reuses the stack's three brokers when each is up and registered, else starts all three anew.

    All or nothing: a new node would be formatted with a new cluster id, which the others refuse.
    """
    nodes = [stack.services.get(name) for name in BROKER_NAMES]
    if all(node and node.alive() and kafka.broker_ready(node) for node in nodes):
        log(f"kafka: reusing {stack.kafka_bootstrap} ({CLUSTER_BROKERS} brokers)")
        return
    stop_all([node for node in nodes if node and node.pid and node.alive()])
    for node in kafka.start_cluster(directory, log, CLUSTER_BROKERS):
        stack.services[node.name] = node
    stack.save()
    for name in BROKER_NAMES:
        wait_ready(stack.services[name], kafka.broker_ready)
    log(f"kafka: ready at {stack.kafka_bootstrap} ({CLUSTER_BROKERS} brokers, one KRaft quorum)")


def down(directory: Path | None = None, purge: bool = False, log: Callable[[str], None] = lambda _: None) -> None:
    """Stop every service we started; with `purge`, delete their data too.

    A cluster's brokers are stopped together: one stopped last, alone, would wait for a
    controller quorum that is gone before it could shut down cleanly.
    """
    directory = directory or stack_dir()
    stack = Stack.load(directory)
    if stack is not None:
        running = {name: service for name, service in stack.services.items()
                   if service.pid is not None and service.alive()}
        together = [running.pop(name) for name in BROKER_NAMES if name in running]
        for name, service in reversed(list(running.items())):
            stop(service)
            log(f"{name}: stopped")
        if together:
            stop_all(together)
            log(f"{', '.join(s.name for s in together)}: stopped")
        (directory / "stack.json").unlink(missing_ok=True)
    if purge and directory.exists():
        shutil.rmtree(directory)


def status(directory: Path | None = None) -> dict[str, object]:
    """Addresses and health of the stack in `directory` (empty services when none)."""
    stack = Stack.load(directory or stack_dir())
    if stack is None:
        return {"directory": str(directory or stack_dir()), "running": False, "services": {}}
    sec = stack.security or None
    checks = {"kafka": partial(kafka.ready, security=sec), "redis": partial(redis.ready, security=sec),
              "prometheus": prometheus_service.ready, **_cluster_checks(stack), **_sentinel_checks(stack),
              **dict.fromkeys(BROKER_NAMES, kafka.broker_ready)}
    out = stack.to_json()
    healthy = {name: s.alive() and checks[name](s) for name, s in stack.services.items()}
    out["healthy"] = healthy
    out["running"] = bool(healthy) and all(healthy.values())
    return out


def local_addresses(directory: Path | None = None) -> dict[str, str]:
    """The running local stack's addresses as settings defaults: `kafka_bootstrap`, `redis_url`
    and, when it has a Redis Cluster, `redis_cluster_url` (empty when no stack runs)."""
    running = Stack.load(directory)
    if running is None:
        return {}
    found = {"redis_url": running.services.get("redis"), "redis_cluster_url": running.services.get(CLUSTER_NODES[0])}
    bootstrap = {"kafka_bootstrap": running.kafka_bootstrap} if running.kafka_brokers else {}
    return {**bootstrap, **{name: service.address for name, service in found.items() if service is not None}}


def set_scrape_targets(stack: Stack, targets: list[str]) -> None:
    """Point the stack's Prometheus at these host:port targets (file-based discovery, ~1 s)."""
    prometheus_service.set_scrape_targets(Path(stack.directory) / "prometheus", targets)


# --- Redis Cluster ----------------------------------------------------------------------


def cluster_up(directory: Path, log: Callable[[str], None] = lambda _: None, replicas: int = 0) -> Stack:
    """Start (or reuse) a Redis Cluster of three masters, with `replicas` (0 or 1) replicas each,
    in the stack in `directory`.

    Each node is a `redis-server` in cluster mode with its own directory, free client and bus
    ports, the single Redis's durability (appendfsync always) and `noeviction`. The slots are
    assigned by `redis-cli --cluster create` (which makes the last three nodes the replicas),
    and the cluster is ready when every node's CLUSTER INFO says `cluster_state:ok` and every
    replica's link is up. A cluster that is not wholly healthy, or has another number of
    replicas, is stopped and made anew (new ports, empty). `stack.redis_cluster_url` is a
    client's startup node.
    """
    if replicas not in (0, 1):
        raise StackError(f"a local Redis Cluster has 0 or 1 replicas per master (asked for {replicas})")
    directory.mkdir(parents=True, exist_ok=True)
    stack = Stack.load(directory) or Stack(str(directory))
    stack.directory = str(directory)
    if stack.security:
        raise StackError(f"{directory} holds a secure stack: the local Redis Cluster is plain only")
    names = [*CLUSTER_NODES, *(CLUSTER_REPLICAS if replicas else ())]
    healthy = partial(redis.cluster_node_ok, nodes=len(names))
    nodes = [stack.services.get(name) for name in (*CLUSTER_NODES, *CLUSTER_REPLICAS)]
    if all(node and node.alive() and healthy(node) for node in nodes[:len(names)]) and not any(nodes[len(names):]):
        log(f"redis cluster: reusing {stack.redis_cluster_url}")
        return stack
    for name, node in zip((*CLUSTER_NODES, *CLUSTER_REPLICAS), nodes):
        if node and node.pid and node.alive():
            stop(node)
        stack.services.pop(name, None)
        shutil.rmtree(directory / name, ignore_errors=True)   # its nodes.conf names the old ports
    server = ensure_binary("redis-server", "redis-server", log)
    cli = ensure_binary("redis-cli", "redis-tools", log)
    ports = free_ports(2 * len(names))
    for name, port, bus_port in zip(names, ports[0::2], ports[1::2]):
        stack.services[name] = redis.start_cluster_node(server, directory / name, port, bus_port)
        stack.save()
    for name in names:
        wait_ready(stack.services[name], redis.ready)
    addresses = [f"127.0.0.1:{stack.services[name].port}" for name in names]
    try:
        created = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
                                  "--cluster-yes"],
                                 capture_output=True, text=True, timeout=READY_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StackError(f"redis-cli --cluster create did not finish in {READY_TIMEOUT_S:.0f} s") from None
    if created.returncode != 0:
        raise StackError(f"redis-cli --cluster create failed (exit {created.returncode}):\n"
                         f"{(created.stdout + created.stderr)[-2000:]}")
    for name in names:
        wait_ready(stack.services[name], healthy)
    for name in names[len(CLUSTER_NODES):]:
        wait_ready(stack.services[name], redis.replica_in_sync)
    stack.save()
    log(f"redis cluster: ready at {stack.redis_cluster_url} ({len(CLUSTER_NODES)} masters, "
        f"{'one replica each' if replicas else 'no replicas'})")
    return stack


def cluster_down(directory: Path, purge: bool = False, log: Callable[[str], None] = lambda _: None) -> None:
    """Stop the Redis Cluster of the stack in `directory` (its other services keep running);
    with `purge`, delete the nodes' data too."""
    _stop_part(directory, (*CLUSTER_NODES, *CLUSTER_REPLICAS), purge, log)


# --- Redis with Sentinel ------------------------------------------------------------------


def sentinel_up(directory: Path, log: Callable[[str], None] = lambda _: None) -> Stack:
    """Start (or reuse) a Redis primary, its replica and three Sentinels in the stack in `directory`.

    Ready when the replica's link is up and every Sentinel knows the replica and the other two.
    A setup not wholly healthy is stopped and made anew (new ports, empty)."""
    directory.mkdir(parents=True, exist_ok=True)
    stack = Stack.load(directory) or Stack(str(directory))
    stack.directory = str(directory)
    if stack.security:
        raise StackError(f"{directory} holds a secure stack: the local Sentinel setup is plain only")
    names = (*SENTINEL_NODES, *SENTINELS)
    checks = _sentinel_checks(stack)
    if all(name in stack.services and stack.services[name].alive() and checks[name](stack.services[name])
           for name in names):
        log(f"redis sentinel: reusing {stack.redis_sentinels}")
        return stack
    sentinel_down(directory, purge=True)
    stack = Stack.load(directory) or Stack(str(directory))
    server = ensure_binary("redis-server", "redis-server", log)
    primary_port, replica_port, *sentinel_ports = free_ports(2 + len(SENTINELS))
    stack.services["redis-primary"] = redis.start_data_node(server, directory / "redis-primary", primary_port)
    stack.save()
    wait_ready(stack.services["redis-primary"], redis.ready)
    stack.services["redis-replica"] = redis.start_data_node(server, directory / "redis-replica", replica_port,
                                                           primary_port)
    stack.save()
    wait_ready(stack.services["redis-replica"], redis.replica_in_sync)
    for name, port in zip(SENTINELS, sentinel_ports):
        stack.services[name] = redis.start_sentinel(server, directory / name, port, primary_port)
        stack.save()
    for name in SENTINELS:
        wait_ready(stack.services[name], redis.sentinel_ok)
    log(f"redis sentinel: ready, primary {SENTINEL_MASTER!r} at {stack.services['redis-primary'].address}, "
        f"sentinels {stack.redis_sentinels}")
    return stack


def sentinel_down(directory: Path, purge: bool = False, log: Callable[[str], None] = lambda _: None) -> None:
    """Stop the Sentinel setup of the stack in `directory` (its other services keep running)."""
    _stop_part(directory, (*SENTINEL_NODES, *SENTINELS), purge, log)


def _stop_part(directory: Path, names: tuple[str, ...], purge: bool, log: Callable[[str], None]) -> None:
    """Stop these services of the stack in `directory` (last first) and forget them; the stack's
    file goes when nothing is left in it."""
    stack = Stack.load(directory)
    if stack is None:
        return
    for name in reversed(names):
        node = stack.services.pop(name, None)
        if node and node.pid is not None and node.alive():
            stop(node)
            log(f"{name}: stopped")
        if purge:
            shutil.rmtree(directory / name, ignore_errors=True)
    if stack.services:
        stack.save()
    else:
        (directory / "stack.json").unlink(missing_ok=True)


def _sentinel_checks(stack: Stack) -> dict[str, Callable[[Service], bool]]:
    return {"redis-primary": redis.ready, "redis-replica": redis.ready, **dict.fromkeys(SENTINELS, redis.sentinel_ok)}


# --- restarts (fault tests, operators) -----------------------------------------------------


def restart(stack: Stack, name: str, down_s: float = 0.0, kill: bool = False,
            log: Callable[[str], None] = lambda _: None) -> Service:
    """Stop a service we started and start it again with the same ports, settings and data.

    Kafka keeps its log directory and Redis reloads its append-only file, so clients see
    the same service come back. `kill` stops it with SIGKILL instead of a clean shutdown;
    `down_s` keeps it down that long before the start. A broker of a cluster (`kafka-2`) is
    ready again once the cluster's metadata lists it unfenced.
    """
    service = stack.services[name]
    if service.pid is None:
        raise StackError(f"{name} was not started by this stack; restart it yourself")
    cwd = Path(os.readlink(f"/proc/{service.pid}/cwd"))
    command = json.loads((cwd / "command.json").read_text())
    if kill:
        os.killpg(service.pid, signal.SIGKILL)
        reap(service.pid)
        while service.alive():
            time.sleep(0.05)
    else:
        stop(service)
    log(f"{name}: stopped")
    time.sleep(down_s)
    service.pid = spawn(command, Path(service.log or cwd / f"{name}.log"), cwd)
    stack.save()
    checks = {"kafka": kafka.ready, "redis": redis.ready, "prometheus": prometheus_service.ready,
              **_cluster_checks(stack), **_sentinel_checks(stack), **dict.fromkeys(BROKER_NAMES, kafka.broker_ready)}
    wait_ready(service, checks[name])
    log(f"{name}: ready again at {service.address}")
    return service


def _cluster_checks(stack: Stack) -> dict[str, Callable[[Service], bool]]:
    """The health check of each Redis Cluster node of `stack`: it knows all of the stack's nodes."""
    names = [name for name in (*CLUSTER_NODES, *CLUSTER_REPLICAS) if name in stack.services]
    return dict.fromkeys(names, partial(redis.cluster_node_ok, nodes=len(names)))
