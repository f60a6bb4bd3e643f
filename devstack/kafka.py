"""Kafka 3.9 in KRaft mode from its Maven Central jars, on the JDK: one combined broker and controller
(`start`), or a cluster of three (`start_cluster`) whose topics can be replicated."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from devstack.processes import (Service, StackError, cache_dir, configured_port, ensure_binary, free_port, free_ports,
                                spawn)
from devstack.tls import client_options, read_secret

ROOT = Path(__file__).resolve().parents[1]
KAFKA_FILES = ROOT / "deploy" / "local" / "kafka"
KAFKA_VERSION = "3.9.1"

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

# A three-broker cluster (`./engage stack up --brokers 3`): the same, with the internal topics on every
# broker and a write acknowledged (acks=all) only once two replicas hold it, so a broker lost after the
# acknowledgement loses nothing. docker-compose.yml runs these (a test compares them).
CLUSTER_BROKERS = 3
CLUSTER_BROKER_SETTINGS = {
    **BROKER_SETTINGS,
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
}
# The JVM heap of a broker: the single broker's is larger (it carries every partition alone); a
# cluster's three must fit a 2-core CI machine beside the test suite (RSS measured: docs/reliability.md).
SINGLE_HEAP = ["-Xms256m", "-Xmx1g"]
CLUSTER_HEAP = ["-Xms128m", "-Xmx384m"]


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


def start(directory: Path, log: Callable[[str], None], security: dict[str, str] | None = None) -> Service:
    """The one combined broker and controller of the plain (or secure) stack."""
    libs = kafka_libs(log)
    port = free_port() if security else configured_port("ENGAGE_KAFKA_PORT")   # a fixed port is the plain stack's
    controller_port = free_port()
    properties = _node_properties(directory, 1, port, f"1@127.0.0.1:{controller_port}", controller_port,
                                  BROKER_SETTINGS, security)
    _format(libs, [properties], security)
    return _spawn("kafka", directory, libs, properties, SINGLE_HEAP, port)


def start_cluster(directory: Path, log: Callable[[str], None], count: int = CLUSTER_BROKERS) -> list[Service]:
    """`count` combined brokers and controllers, one quorum, each in `directory/kafka-N` with its own ports.

    Plain listeners only. The nodes are spawned together (a controller quorum forms only once a
    majority runs); the caller waits for each with `broker_ready`. Services `kafka-1` .. `kafka-N`.
    """
    libs = kafka_libs(log)
    ports = free_ports(2 * count)
    client_ports, controller_ports = ports[:count], ports[count:]
    voters = ",".join(f"{node}@127.0.0.1:{cport}" for node, cport in enumerate(controller_ports, start=1))
    names = cluster_broker_names(count)
    properties = [_node_properties(directory / name, node, port, voters, cport, CLUSTER_BROKER_SETTINGS, None)
                  for node, (name, port, cport) in enumerate(zip(names, client_ports, controller_ports), start=1)]
    _format(libs, properties, None)
    return [_spawn(name, directory / name, libs, path, CLUSTER_HEAP, port)
            for name, path, port in zip(names, properties, client_ports)]


def cluster_broker_names(count: int = CLUSTER_BROKERS) -> list[str]:
    return [f"kafka-{node}" for node in range(1, count + 1)]


def _node_properties(directory: Path, node: int, port: int, voters: str, controller_port: int,
                     settings: dict[str, str], security: dict[str, str] | None) -> Path:
    """Writes a node's server.properties into `directory` (its data directory made afresh) and returns its path."""
    listener = "SASL_SSL" if security else "PLAINTEXT"
    data = directory / "data"
    if data.exists():
        shutil.rmtree(data)  # listener ports change between runs; a fresh log is simplest and quick
    data.mkdir(parents=True)
    properties = directory / "server.properties"
    properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node}",
                f"controller.quorum.voters={voters}",
                f"listeners={listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners={listener}://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
                f"inter.broker.listener.name={listener}",
                f"log.dirs={data}",
                *(f"{key}={value}" for key, value in settings.items()),
                *(_kafka_security_properties(security) if security else []),
                "",
            ]
        )
    )
    if security:
        properties.chmod(0o600)   # it holds the broker's own SCRAM password
    return properties


def _log4j() -> str:
    return f"-Dlog4j.configuration=file:{KAFKA_FILES / 'log4j.properties'}"


def _format(libs: Path, properties: list[Path], security: dict[str, str] | None) -> None:
    """Formats every node's log directory with one new cluster id (the nodes of a cluster share it)."""
    java, classpath = _java(), f"{libs}/*"
    cluster_id = subprocess.run(
        [java, "-cp", classpath, _log4j(), "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() or _kafka_uuid()
    for path in properties:
        formatted = subprocess.run(
            [java, "-cp", classpath, _log4j(), "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(path), "--ignore-formatted", *(_scram_users(security) if security else [])],
            capture_output=True, text=True,
        )
        if formatted.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{formatted.stdout}{formatted.stderr}")


def _spawn(name: str, directory: Path, libs: Path, properties: Path, heap: list[str], port: int) -> Service:
    log_path = directory / "kafka.log"
    pid = spawn(
        [_java(), *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
         _log4j(), "-cp", f"{libs}/*", "kafka.Kafka", str(properties)],
        log_path, directory,
    )
    return Service(name, f"127.0.0.1:{port}", pid, port, str(log_path))


def _kafka_security_properties(security: dict[str, str]) -> list[str]:
    """SASL_SSL with SCRAM-SHA-512 on the client listener, PEM key material (no Java keystore)."""
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{security["broker_username"]}" password="{read_secret(security["broker_password_file"])}";')
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
        f"SCRAM-SHA-512=[name={security[f'{user}_username']},password={read_secret(security[f'{user}_password_file'])}]")]


def ready(service: Service, security: dict[str, str] | None = None) -> bool:
    """The broker answers a metadata request (a cluster: some broker does, through this one)."""
    return _cluster_ports(service, security) is not None


def broker_ready(service: Service) -> bool:
    """A broker of a cluster is registered and unfenced: the cluster's metadata lists its port.

    Asking it alone is not enough: a broker answers before the controller quorum has taken it
    back, and one just restarted is not yet a replica anyone can use.
    """
    ports = _cluster_ports(service, None)
    return ports is not None and service.port in ports


def _cluster_ports(service: Service, security: dict[str, str] | None) -> set[int] | None:
    """The client ports of the brokers the cluster's metadata lists, asked through `service` (None: no answer)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=service.address, request_timeout_ms=3000,
                                 client_id="engage-stack-probe", **client_options(service, security, "kafka"))
    except (KafkaError, OSError, ValueError):
        return None
    try:
        brokers = admin.describe_cluster()["brokers"]   # fenced ones too (DescribeCluster v2): left out
        return {int(broker["port"]) for broker in brokers if not broker.get("is_fenced")}
    except (KafkaError, OSError, KeyError, TypeError):
        return None
    finally:
        admin.close()


def _kafka_uuid() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise StackError("a Java runtime (17+) is needed for the local Kafka broker: install a JDK or set JAVA_HOME")
    return java
