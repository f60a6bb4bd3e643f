"""The local service stack, provisioned by the project itself (no Docker engine needed).

* Kafka 3.9 in KRaft mode (one combined broker + controller), from its Maven Central
  jars resolved by `mvn` into a cache and run on the machine's JDK.
* Redis from Debian's `redis-server` (or an already running one: ENGAGE_REDIS_URL).
* Prometheus with promtool from Debian's `prometheus`, only when asked for.

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
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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

    def to_json(self) -> dict[str, object]:
        return {
            "directory": self.directory,
            "kafka_bootstrap": self.services["kafka"].address if "kafka" in self.services else None,
            "redis_url": self.services["redis"].address if "redis" in self.services else None,
            "prometheus_url": self.prometheus_url,
            "services": {name: asdict(s) for name, s in self.services.items()},
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
        return cls(str(directory), {name: Service(**s) for name, s in raw["services"].items()})


# --- public operations ------------------------------------------------------------------


def up(
    directory: Path | None = None,
    prometheus: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> Stack:
    """Start (or reuse) Kafka and Redis, and Prometheus when asked; return their addresses."""
    directory = directory or stack_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stack = Stack.load(directory) or Stack(str(directory))
    stack.directory = str(directory)

    starters: list[tuple[str, Callable[[Path, Callable[[str], None]], Service], Callable[[Service], bool]]] = [
        ("kafka", _start_kafka, _kafka_ready),
        ("redis", _start_redis, _redis_ready),
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
    checks = {"kafka": _kafka_ready, "redis": _redis_ready, "prometheus": _prometheus_ready}
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


def _start_kafka(directory: Path, log: Callable[[str], None]) -> Service:
    libs = kafka_libs(log)
    java = _java()
    port = _port("ENGAGE_KAFKA_PORT")
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
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                *(f"{key}={value}" for key, value in BROKER_SETTINGS.items()),
                "",
            ]
        )
    )
    classpath = f"{libs}/*"
    log4j = f"-Dlog4j.configuration=file:{KAFKA_FILES / 'log4j.properties'}"
    cluster_id = subprocess.run(
        [java, "-cp", classpath, log4j, "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() or _kafka_uuid()
    formatted = subprocess.run(
        [java, "-cp", classpath, log4j, "kafka.tools.StorageTool", "format", "-t", cluster_id,
         "-c", str(properties), "--ignore-formatted"],
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


def _kafka_ready(service: Service) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=service.address, request_timeout_ms=3000,
                                 client_id="engage-stack-probe")
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


def _start_redis(directory: Path, log: Callable[[str], None]) -> Service:
    external = os.environ.get("ENGAGE_REDIS_URL")
    if external:
        return Service("redis", external)
    server = ensure_binary("redis-server", "redis-server", log)
    port = _port("ENGAGE_REDIS_PORT")
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    pid = _spawn(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "yes"],
        log_path, directory,
    )
    return Service("redis", f"redis://127.0.0.1:{port}/0", pid, port, str(log_path))


def _redis_ready(service: Service) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(service.address, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


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
    checks = {"kafka": _kafka_ready, "redis": _redis_ready, "prometheus": _prometheus_ready}
    _wait_ready(service, checks[name])
    log(f"{name}: ready again at {service.address}")
    return service
