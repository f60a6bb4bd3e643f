"""Kafka 3.9 in KRaft mode (one combined broker and controller) from its Maven Central jars, on the JDK."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from devstack.processes import Service, StackError, cache_dir, configured_port, ensure_binary, free_port, spawn
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
    libs = kafka_libs(log)
    java = _java()
    port = free_port() if security else configured_port("ENGAGE_KAFKA_PORT")   # a fixed port is the plain stack's
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
    pid = spawn(
        [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
         log4j, "-cp", classpath, "kafka.Kafka", str(properties)],
        log_path, directory,
    )
    return Service("kafka", f"127.0.0.1:{port}", pid, port, str(log_path))


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
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=service.address, request_timeout_ms=3000,
                                 client_id="engage-stack-probe", **client_options(service, security, "kafka"))
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
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise StackError("a Java runtime (17+) is needed for the local Kafka broker: install a JDK or set JAVA_HOME")
    return java
