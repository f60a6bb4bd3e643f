"""The local service stack, provisioned by the project itself (no Docker engine needed).

* Kafka 3.9 in KRaft mode (one combined broker + controller), from its Maven Central
  jars resolved by `mvn` into a cache and run on the machine's JDK.
* Redis from Debian's `redis-server` (or an already running one: ENGAGE_REDIS_URL).
* Prometheus with promtool from Debian's `prometheus`, only when asked for.
* `cluster_up(directory)`: a Redis Cluster of three masters (no replicas) from the same
  `redis-server` in cluster mode, made with `redis-cli --cluster create`; it joins the stack
  in `directory` (services `redis-cluster-1..3`), and any node's URL is a client's startup node.
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
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAFKA_FILES = ROOT / "deploy" / "local" / "kafka"
KAFKA_VERSION = "3.9.1"
READY_TIMEOUT_S = 120.0

# Broker settings beyond listeners and paths; docker-compose.yml sets the same (a test checks).
BROKER_SETTINGS = {
    "num.partitions": "4",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "true",
    "log.retention.hours": "-1",
}


class StackError(RuntimeError):
    """A service could not be provisioned or did not become ready; the message says why."""


def stack_dir() -> Path:
    return Path(os.environ.get("ENGAGE_STACK_DIR", ROOT / ".engage" / "stack"))


def secure_stack_dir() -> Path:
    """Where `engage stack up --secure` keeps its state: next to the plain stack's."""
    plain = stack_dir()
    return plain.with_name(plain.name + "-secure")


def cache_dir() -> Path:
    return Path(os.environ.get("ENGAGE_CACHE_DIR", Path.home() / ".cache" / "engage"))


@dataclass
class Service:
    name: str
    address: str                  # bootstrap host:port, or URL
    pid: int | None = None        # None: not started by us (external)
    port: int | None = None
    log: str | None = None

    def alive(self) -> bool:
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _is_not_zombie(self.pid)


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
        return self.services["kafka"].address

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

    def to_json(self) -> dict[str, object]:
        return {
            "directory": self.directory,
            "kafka_bootstrap": self.services["kafka"].address if "kafka" in self.services else None,
            "redis_url": self.services["redis"].address if "redis" in self.services else None,
            "prometheus_url": self.prometheus_url,
            **({"redis_cluster_url": self.redis_cluster_url} if self.redis_cluster_url else {}),
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
) -> Stack:
    """Start (or reuse) Kafka and Redis, and Prometheus when asked; return their addresses.

    `secure`: Kafka on SASL_SSL with SCRAM users and Redis on TLS with an ACL user (see the
    module notes); use a directory of its own (`secure_stack_dir()`), and `client_env()`.
    """
    directory = directory or stack_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stack = Stack.load(directory) or Stack(str(directory))
    stack.directory = str(directory)
    if secure:
        stack.security = _secure_material(directory / "tls", log)
    elif stack.security:
        raise StackError(f"{directory} holds a secure stack: use up(directory, secure=True)")
    sec = stack.security or None

    starters: list[tuple[str, Callable[[Path, Callable[[str], None]], Service], Callable[[Service], bool]]] = [
        ("kafka", partial(_start_kafka, security=sec), partial(_kafka_ready, security=sec)),
        ("redis", partial(_start_redis, security=sec), partial(_redis_ready, security=sec)),
    ]
    if prometheus:
        starters.append(("prometheus", _start_prometheus, _prometheus_ready))
    for name, start, ready in starters:
        existing = stack.services.get(name)
        if existing and existing.alive() and ready(existing):
            log(f"{name}: reusing {existing.address}")
            continue
        if existing and existing.pid and existing.alive():
            _stop(existing)
        service = start(directory / name, log)
        stack.services[name] = service
        stack.save()
        _wait_ready(service, ready)
        log(f"{name}: ready at {service.address}")
    stack.save()
    return stack


def down(directory: Path | None = None, purge: bool = False, log: Callable[[str], None] = lambda _: None) -> None:
    """Stop every service we started; with `purge`, delete their data too."""
    directory = directory or stack_dir()
    stack = Stack.load(directory)
    if stack is not None:
        for name, service in reversed(list(stack.services.items())):
            if service.pid is not None and service.alive():
                _stop(service)
                log(f"{name}: stopped")
        (directory / "stack.json").unlink(missing_ok=True)
    if purge and directory.exists():
        shutil.rmtree(directory)


def status(directory: Path | None = None) -> dict[str, object]:
    """Addresses and health of the stack in `directory` (empty services when none)."""
    stack = Stack.load(directory or stack_dir())
    if stack is None:
        return {"directory": str(directory or stack_dir()), "running": False, "services": {}}
    sec = stack.security or None
    checks = {"kafka": partial(_kafka_ready, security=sec), "redis": partial(_redis_ready, security=sec),
              "prometheus": _prometheus_ready, **dict.fromkeys(CLUSTER_NODES, _cluster_node_ok)}
    out = stack.to_json()
    healthy = {name: s.alive() and checks[name](s) for name, s in stack.services.items()}
    out["healthy"] = healthy
    out["running"] = bool(healthy) and all(healthy.values())
    return out


# --- Kafka ------------------------------------------------------------------------------


def kafka_libs(log: Callable[[str], None] = lambda _: None) -> Path:
    """The broker's jars, resolved from Maven Central once and cached."""
    target = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = ensure_binary("mvn", "maven", log)
    log(f"kafka: resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central (once) ...")
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(KAFKA_FILES / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
        capture_output=True, text=True,
    )
    jars = list(target.glob("kafka_2.13-*.jar"))
    if result.returncode != 0 or not jars:
        raise StackError(
            "could not resolve the Kafka jars from Maven Central "
            f"(mvn exit {result.returncode}):\n{(result.stdout + result.stderr)[-2000:]}"
        )
    marker.write_text(KAFKA_VERSION)
    return target


def _start_kafka(directory: Path, log: Callable[[str], None], security: dict[str, str] | None = None) -> Service:
    libs = kafka_libs(log)
    java = _java()
    port = free_port() if security else _port("ENGAGE_KAFKA_PORT")   # a fixed port is the plain stack's
    listener = "SASL_SSL" if security else "PLAINTEXT"
    controller_port = free_port()
    data = directory / "data"
    if data.exists():
        shutil.rmtree(data)  # listener ports change between runs; a fresh log is simplest and quick
    data.mkdir(parents=True)
    properties = directory / "server.properties"
    properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners={listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners={listener}://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
                f"inter.broker.listener.name={listener}",
                f"log.dirs={data}",
                *(f"{key}={value}" for key, value in BROKER_SETTINGS.items()),
                *(_kafka_security_properties(security) if security else []),
                "",
            ]
        )
    )
    if security:
        properties.chmod(0o600)   # it holds the broker's own SCRAM password
    classpath = f"{libs}/*"
    log4j = f"-Dlog4j.configuration=file:{KAFKA_FILES / 'log4j.properties'}"
    cluster_id = subprocess.run(
        [java, "-cp", classpath, log4j, "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() or _kafka_uuid()
    formatted = subprocess.run(
        [java, "-cp", classpath, log4j, "kafka.tools.StorageTool", "format", "-t", cluster_id,
         "-c", str(properties), "--ignore-formatted", *(_scram_users(security) if security else [])],
        capture_output=True, text=True,
    )
    if formatted.returncode != 0:
        raise StackError(f"kafka storage format failed:\n{formatted.stdout}{formatted.stderr}")
    log_path = directory / "kafka.log"
    pid = _spawn(
        [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
         log4j, "-cp", classpath, "kafka.Kafka", str(properties)],
        log_path, directory,
    )
    return Service("kafka", f"127.0.0.1:{port}", pid, port, str(log_path))


def _kafka_security_properties(security: dict[str, str]) -> list[str]:
    """SASL_SSL with SCRAM-SHA-512 on the client listener, PEM key material (no Java keystore)."""
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{security["broker_username"]}" password="{_read(security["broker_password_file"])}";')
    return [
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={security['server_pem']}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={security['ca_file']}",
        "ssl.client.auth=none",
    ]


def _scram_users(security: dict[str, str]) -> list[str]:
    """StorageTool arguments creating the broker's and the clients' SCRAM users in the metadata log."""
    return [arg for user in ("broker", "kafka") for arg in (
        "--add-scram",
        f"SCRAM-SHA-512=[name={security[f'{user}_username']},password={_read(security[f'{user}_password_file'])}]")]


def _kafka_ready(service: Service, security: dict[str, str] | None = None) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=service.address, request_timeout_ms=3000,
                                 client_id="engage-stack-probe", **_client_options(service, security, "kafka"))
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _kafka_uuid() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise StackError("a Java runtime (17+) is needed for the local Kafka broker: install a JDK or set JAVA_HOME")
    return java


# --- Redis ------------------------------------------------------------------------------


def _start_redis(directory: Path, log: Callable[[str], None], security: dict[str, str] | None = None) -> Service:
    if security:
        return _start_secure_redis(directory, log, security)
    external = os.environ.get("ENGAGE_REDIS_URL")
    if external:
        return Service("redis", external)
    server = ensure_binary("redis-server", "redis-server", log)
    port = _port("ENGAGE_REDIS_PORT")
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    pid = _spawn(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
         "--maxmemory-policy", "noeviction"],
        log_path, directory,
    )
    return Service("redis", f"redis://127.0.0.1:{port}/0", pid, port, str(log_path))


# Every command the project sends to Redis (worker, replay, score, the stack's probe), and no other:
# the secure stack's ACL user gets only these, so the tests prove the list is enough (redis-py's CLIENT SETINFO
# on connect may be refused: it ignores that).
REDIS_COMMANDS = ("ping", "select", "exists", "del", "hget", "hgetall", "hset", "hincrby", "hdel",
                  "zadd", "zrem", "zrange", "zrevrange", "zrangebyscore", "zrangebylex", "zrevrangebylex", "zlexcount",
                  "zcount", "zcard", "zmscore", "zremrangebyscore", "sadd", "srem", "smembers",
                  "lpush", "ltrim", "lrange", "multi", "exec", "discard", "evalsha", "eval", "script|load",
                  "scan", "unlink", "acl|whoami", "hlen", "info")


def _start_secure_redis(directory: Path, log: Callable[[str], None], security: dict[str, str]) -> Service:
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
        f"user {security['redis_username']} on >{_read(security['redis_password_file'])} ~* -@all "
        + " ".join(f"+{command}" for command in REDIS_COMMANDS),
        f"dir {directory}", "appendonly yes", 'save ""', "daemonize no", "maxmemory-policy noeviction", "",
    ]))
    log_path = directory / "redis.log"
    pid = _spawn([server, str(config)], log_path, directory)
    return Service("redis", f"rediss://127.0.0.1:{port}/0", pid, port, str(log_path))


def _redis_ready(service: Service, security: dict[str, str] | None = None) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(service.address, socket_timeout=2, socket_connect_timeout=2,
                                      **_client_options(service, security, "redis"))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


# --- Redis Cluster ----------------------------------------------------------------------

CLUSTER_NODES = ("redis-cluster-1", "redis-cluster-2", "redis-cluster-3")
CLUSTER_SLOTS = 16384


def cluster_up(directory: Path, log: Callable[[str], None] = lambda _: None) -> Stack:
    """Start (or reuse) a Redis Cluster of three masters, no replicas, in the stack in `directory`.

    Each node is a `redis-server` in cluster mode with its own directory, free client and bus
    ports, the single Redis's durability (appendfsync always) and `noeviction`. The slots are
    assigned by `redis-cli --cluster create`, and the cluster is ready when every node's
    CLUSTER INFO says `cluster_state:ok`. A cluster that is not wholly healthy is stopped and
    made anew (new ports, empty). `stack.redis_cluster_url` is a client's startup node.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stack = Stack.load(directory) or Stack(str(directory))
    stack.directory = str(directory)
    if stack.security:
        raise StackError(f"{directory} holds a secure stack: the local Redis Cluster is plain only")
    nodes = [stack.services.get(name) for name in CLUSTER_NODES]
    if all(node and node.alive() and _cluster_node_ok(node) for node in nodes):
        log(f"redis cluster: reusing {stack.redis_cluster_url}")
        return stack
    for name, node in zip(CLUSTER_NODES, nodes):
        if node and node.pid and node.alive():
            _stop(node)
        stack.services.pop(name, None)
        shutil.rmtree(directory / name, ignore_errors=True)   # its nodes.conf names the old ports
    server = ensure_binary("redis-server", "redis-server", log)
    cli = ensure_binary("redis-cli", "redis-tools", log)
    ports = _free_ports(2 * len(CLUSTER_NODES))
    for name, port, bus_port in zip(CLUSTER_NODES, ports[0::2], ports[1::2]):
        stack.services[name] = _start_cluster_node(server, directory / name, port, bus_port)
        stack.save()
    for name in CLUSTER_NODES:
        _wait_ready(stack.services[name], _redis_ready)
    addresses = [f"127.0.0.1:{stack.services[name].port}" for name in CLUSTER_NODES]
    try:
        created = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                                 capture_output=True, text=True, timeout=READY_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StackError(f"redis-cli --cluster create did not finish in {READY_TIMEOUT_S:.0f} s") from None
    if created.returncode != 0:
        raise StackError(f"redis-cli --cluster create failed (exit {created.returncode}):\n"
                         f"{(created.stdout + created.stderr)[-2000:]}")
    for name in CLUSTER_NODES:
        _wait_ready(stack.services[name], _cluster_node_ok)
    stack.save()
    log(f"redis cluster: ready at {stack.redis_cluster_url} ({len(CLUSTER_NODES)} masters, no replicas)")
    return stack


def cluster_down(directory: Path, purge: bool = False, log: Callable[[str], None] = lambda _: None) -> None:
    """Stop the Redis Cluster of the stack in `directory` (its other services keep running);
    with `purge`, delete the nodes' data too."""
    stack = Stack.load(directory)
    if stack is None:
        return
    for name in reversed(CLUSTER_NODES):
        node = stack.services.pop(name, None)
        if node and node.pid is not None and node.alive():
            _stop(node)
            log(f"{name}: stopped")
        if purge:
            shutil.rmtree(directory / name, ignore_errors=True)
    if stack.services:
        stack.save()
    else:
        (directory / "stack.json").unlink(missing_ok=True)


def _start_cluster_node(server: str, directory: Path, port: int, bus_port: int) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    pid = _spawn(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--cluster-enabled", "yes",
         "--cluster-config-file", str(directory / "nodes.conf"), "--cluster-port", str(bus_port),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction",
         "--daemonize", "no", "--protected-mode", "yes"],
        log_path, directory,
    )
    return Service(directory.name, f"redis://127.0.0.1:{port}", pid, port, str(log_path))


def _cluster_node_ok(service: Service) -> bool:
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


# --- TLS material and credentials of the secure stack ------------------------------------


def _secure_material(directory: Path, log: Callable[[str], None]) -> dict[str, str]:
    """A CA, a server key and certificate signed by it (SAN 127.0.0.1 and localhost) and random
    passwords, made once per stack directory with openssl; returns where they are."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    files = {name: str(directory / name) for name in
             ("ca.pem", "server.key", "server.crt", "server.pem", "broker.password", "kafka.password",
              "redis.password")}
    if not all(Path(path).exists() for path in files.values()):
        openssl = ensure_binary("openssl", "openssl", log)
        log("tls: making a CA and a server certificate (SAN 127.0.0.1, localhost) ...")

        def run(*args: str) -> None:
            result = subprocess.run([openssl, *args], capture_output=True, text=True, cwd=directory)
            if result.returncode != 0:
                raise StackError(f"openssl {args[0]} failed:\n{result.stderr[-2000:]}")

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
            "-subj", "/CN=engage local test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
        (directory / "server.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "825", "-extfile", "server.ext")
        # Kafka's PEM keystore: the PKCS#8 key, then the certificate chain, in one file
        pem = directory / "server.pem"
        pem.touch(mode=0o600)
        pem.write_text(_read(files["server.key"]) + "\n" + _read(files["server.crt"]) + "\n" + _read(files["ca.pem"]) + "\n")
        for name in ("broker.password", "kafka.password", "redis.password"):
            path = directory / name
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(16) + "\n")
        for name in ("ca.key", "server.key"):
            (directory / name).chmod(0o600)
    return {
        "ca_file": files["ca.pem"], "server_key": files["server.key"], "server_cert": files["server.crt"],
        "server_pem": files["server.pem"],
        "broker_username": "broker", "broker_password_file": files["broker.password"],
        "kafka_username": "engage", "kafka_password_file": files["kafka.password"],
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "redis_username": "engage", "redis_password_file": files["redis.password"],
    }


def security_env(security: dict[str, str]) -> dict[str, str]:
    """The ENGAGE_* security settings of a client of a secure stack (empty for a plain one)."""
    if not security:
        return {}
    return {
        "ENGAGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ENGAGE_KAFKA_SASL_MECHANISM": security["kafka_sasl_mechanism"],
        "ENGAGE_KAFKA_USERNAME": security["kafka_username"],
        "ENGAGE_KAFKA_PASSWORD_FILE": security["kafka_password_file"],
        "ENGAGE_KAFKA_SSL_CAFILE": security["ca_file"],
        "ENGAGE_REDIS_USERNAME": security["redis_username"],
        "ENGAGE_REDIS_PASSWORD_FILE": security["redis_password_file"],
        "ENGAGE_REDIS_SSL_CA_FILE": security["ca_file"],
    }


def _client_options(service: Service, security: dict[str, str] | None, family: str) -> dict[str, object]:
    """The probe's client options, from the same settings and helper every client uses."""
    if not security:
        return {}
    from streams.security import kafka_options, redis_options
    from streams.settings import load_settings

    address = {"kafka": "ENGAGE_KAFKA_BOOTSTRAP", "redis": "ENGAGE_REDIS_URL"}[family]
    env = {"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENGAGE_REDIS_URL": "rediss://127.0.0.1:1/0",
           **security_env(security), address: service.address}
    settings = load_settings(env=env)
    return kafka_options(settings) if family == "kafka" else redis_options(settings)


def _read(path: str) -> str:
    return Path(path).read_text().strip()


# --- Prometheus ---------------------------------------------------------------------------


def _start_prometheus(directory: Path, log: Callable[[str], None]) -> Service:
    binary = ensure_binary("prometheus", "prometheus", log)
    port = _port("ENGAGE_PROMETHEUS_PORT")
    directory.mkdir(parents=True, exist_ok=True)
    targets = directory / "targets.json"
    if not targets.exists():
        targets.write_text("[]")
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: engagement\n    file_sd_configs:\n"
        f"      - files: ['{targets}']\n        refresh_interval: 1s\n"
    )
    log_path = directory / "prometheus.log"
    pid = _spawn(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        log_path, directory,
    )
    return Service("prometheus", f"http://127.0.0.1:{port}", pid, port, str(log_path))


def _prometheus_ready(service: Service) -> bool:
    try:
        with urllib.request.urlopen(f"{service.address}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def set_scrape_targets(stack: Stack, targets: list[str]) -> None:
    """Point the local Prometheus at these host:port targets (file-based discovery, ~1 s)."""
    directory = Path(stack.directory) / "prometheus"
    payload = [{"targets": targets, "labels": {"job": "engagement"}}]
    tmp = directory / "targets.json.tmp"
    tmp.write_text(json.dumps(payload))
    tmp.replace(directory / "targets.json")


# --- process and package helpers -----------------------------------------------------------


_apt_updated = False


def ensure_binary(binary: str, package: str, log: Callable[[str], None] = lambda _: None) -> str:
    """The path of `binary`, installing Debian's `package` first when it is missing."""
    global _apt_updated
    found = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if found:
        return found
    apt = shutil.which("apt-get")
    if not apt or os.geteuid() != 0:
        raise StackError(f"'{binary}' is missing: install the Debian package '{package}' (needs root)")
    log(f"installing Debian package {package} ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run([apt, "update", "-qq"], check=False, capture_output=True, env=env)
        _apt_updated = True
    result = subprocess.run([apt, "install", "-y", "-qq", "--no-install-recommends", package],
                            capture_output=True, text=True, env=env)
    found = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if result.returncode != 0 or not found:
        raise StackError(f"installing {package} failed:\n{(result.stdout + result.stderr)[-2000:]}")
    return found


def _spawn(command: list[str], log_path: Path, cwd: Path) -> int:
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "command.json").write_text(json.dumps(command))  # for `restart` (Redis rewrites its cmdline)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=cwd, start_new_session=True)
    return process.pid


def _wait_ready(service: Service, ready: Callable[[Service], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not service.alive():
            raise StackError(f"{service.name} exited during start-up; last log lines:\n{_tail(service.log)}")
        if ready(service):
            return
        time.sleep(0.3)
    raise StackError(f"{service.name} not ready after {READY_TIMEOUT_S:.0f} s; last log lines:\n{_tail(service.log)}")


def _stop(service: Service, grace_s: float = 30.0) -> None:
    assert service.pid is not None
    try:
        os.killpg(service.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and service.alive():
        _reap(service.pid)
        time.sleep(0.1)
    if service.alive():
        try:
            os.killpg(service.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(service.pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_not_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z"


def _port(env_name: str) -> int:
    configured = os.environ.get(env_name)
    if configured:
        try:
            port = int(configured)
        except ValueError:
            raise StackError(f"{env_name} must be a port number (got {configured!r})") from None
        if not 1 <= port <= 65535:
            raise StackError(f"{env_name} must be a port number 1..65535 (got {port})")
        return port
    return free_port()


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: str | None, lines: int = 30) -> str:
    if not path or not Path(path).exists():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


# --- restarts (fault tests, operators) -----------------------------------------------------


def restart(stack: Stack, name: str, down_s: float = 0.0, kill: bool = False,
            log: Callable[[str], None] = lambda _: None) -> Service:
    """Stop a service we started and start it again with the same ports, settings and data.

    Kafka keeps its log directory and Redis reloads its append-only file, so clients see
    the same service come back. `kill` stops it with SIGKILL instead of a clean shutdown;
    `down_s` keeps it down that long before the start.
    """
    service = stack.services[name]
    if service.pid is None:
        raise StackError(f"{name} was not started by this stack; restart it yourself")
    cwd = Path(os.readlink(f"/proc/{service.pid}/cwd"))
    command = json.loads((cwd / "command.json").read_text())
    if kill:
        os.killpg(service.pid, signal.SIGKILL)
        _reap(service.pid)
        while service.alive():
            time.sleep(0.05)
    else:
        _stop(service)
    log(f"{name}: stopped")
    time.sleep(down_s)
    service.pid = _spawn(command, Path(service.log or cwd / f"{name}.log"), cwd)
    stack.save()
    checks = {"kafka": _kafka_ready, "redis": _redis_ready, "prometheus": _prometheus_ready,
              **dict.fromkeys(CLUSTER_NODES, _cluster_node_ok)}
    _wait_ready(service, checks[name])
    log(f"{name}: ready again at {service.address}")
    return service
