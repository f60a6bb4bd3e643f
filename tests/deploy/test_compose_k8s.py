"""docker-compose.yml and the Kubernetes manifests, checked by real tools and against the local stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from scoring.config import load_config
from streams.settings import ENV, Settings, load_settings
from devstack.kafka import BROKER_SETTINGS, CLUSTER_BROKER_SETTINGS, cluster_broker_names
from devstack.processes import ensure_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
BROKERS = cluster_broker_names()   # kafka-1..3, as the local three-broker stack names them


def test_a_real_compose_implementation_accepts_the_file():
    compose = ensure_binary("docker-compose", "docker-compose")
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_whole_product_with_healthchecks_and_start_order():
    services = COMPOSE["services"]
    assert set(services) >= {*BROKERS, "redis", "worker", "api", "alert-sink", "generator", "prometheus",
                             "alertmanager", "grafana"}
    for name in (*BROKERS, "redis", "worker", "prometheus"):
        assert services[name]["healthcheck"]["test"], name
    for broker in BROKERS:
        assert services["worker"]["depends_on"][broker]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    replicas = services["worker"]["deploy"]["replicas"]
    assert 1 <= replicas <= int(services["worker"]["environment"]["ENGAGE_PARTITIONS"])


def test_compose_kafka_and_redis_match_the_local_stack():
    """Compose runs the local three-broker cluster's settings (`engage stack up --brokers 3`), one quorum."""
    assert set(BROKER_SETTINGS) <= set(CLUSTER_BROKER_SETTINGS)
    voters = {f"{n}@{name}:9093" for n, name in enumerate(BROKERS, start=1)}
    for node, name in enumerate(BROKERS, start=1):
        broker = COMPOSE["services"][name]
        env = broker["environment"]
        for key, value in CLUSTER_BROKER_SETTINGS.items():
            compose_key = "KAFKA_" + key.upper().replace(".", "_")
            assert str(env[compose_key]).lower() == value, (name, key)
        assert env["KAFKA_NODE_ID"] == node and set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env["CLUSTER_ID"] == COMPOSE["services"][BROKERS[0]]["environment"]["CLUSTER_ID"]
        assert broker["image"].startswith("apache/kafka:3.9")
    for client in ("worker", "alert-sink"):
        bootstrap = COMPOSE["services"][client]["environment"]["ENGAGE_KAFKA_BOOTSTRAP"]
        assert bootstrap.split(",") == [f"{name}:9092" for name in BROKERS], client
    command = COMPOSE["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    worker_env = COMPOSE["services"]["worker"]["environment"]
    assert all(key in ENV.values() for key in worker_env)


def test_every_copy_in_the_dockerfile_exists():
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_kubernetes_manifests_validate_against_the_schemas():
    import sys

    validate = Path(sys.executable).parent / "kubernetes-validate"
    out = subprocess.run([str(validate), "--strict", *map(str, K8S)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    documents = sum(1 for path in K8S for d in yaml.safe_load_all(path.read_text()) if d)
    assert out.stdout.count("passed") == documents and len(K8S) == 5


def test_a_broken_manifest_is_refused(tmp_path):
    import sys

    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    deployment["spec"]["replicas"] = "two"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    validate = Path(sys.executable).parent / "kubernetes-validate"
    out = subprocess.run([str(validate), "--strict", str(broken)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0


def test_the_deployment_probes_scrapes_and_fits_the_partitions():
    docs = {d["kind"]: d for path in K8S for d in yaml.safe_load_all(path.read_text())
            if d["metadata"]["name"] == "engagement-scorer"}
    pod = docs["Deployment"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    config = docs["ConfigMap"]["data"]
    assert docs["Deployment"]["spec"]["replicas"] <= int(config["ENGAGE_PARTITIONS"])
    assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]


def test_engage_api_is_deployed_with_readiness_on_its_own_readyz():
    docs = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "api.yaml").read_text())}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["api"] and container["image"].startswith("engagement-scorer:")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"][0]["containerPort"] == Settings.web_port
    assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    compose = COMPOSE["services"]["api"]
    assert compose["command"] == ["api"] and "/readyz" in " ".join(compose["healthcheck"]["test"])
    assert compose["depends_on"] == {"redis": {"condition": "service_healthy"}}   # no Kafka
    assert compose["build"]["target"] == "product" and COMPOSE["services"]["generator"]["build"]["target"] == "demo"


def test_the_alert_sink_runs_apart_with_its_url_from_a_secret():
    sink = yaml.safe_load((ROOT / "deploy" / "k8s" / "alert-sink.yaml").read_text())
    container = sink["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["alert-sink"]
    url = next(e for e in container["env"] if e["name"] == "ENGAGE_ALERT_WEBHOOK_URL")
    assert url["valueFrom"]["secretKeyRef"]["name"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == Settings.alert_sink_port
    compose = COMPOSE["services"]["alert-sink"]
    assert compose["command"] == ["alert-sink"] and compose["environment"]["ENGAGE_ALERT_WEBHOOK_URL"]
    assert "ENGAGE_ALERT_WEBHOOK_URL" not in COMPOSE["services"]["worker"]["environment"]


def test_the_configmap_holds_a_valid_scoring_config_and_valid_settings(tmp_path):
    config = yaml.safe_load((ROOT / "deploy" / "k8s" / "configmap.yaml").read_text())["data"]
    toml = tmp_path / "scoring.toml"
    toml.write_text(config["scoring.toml"])
    assert load_config(toml).scoring.window_ms == 30 * 24 * 3600 * 1000
    env = {k: v for k, v in config.items() if k.startswith("ENGAGE_") and k != "ENGAGE_CONFIG"}
    assert all(k in ENV.values() for k in env)
    settings = load_settings(env=env)
    assert settings.web_host == "0.0.0.0" and settings.partitions == 4
    assert settings.topic_replication == "3"   # a production cluster replicates: RF 3, min.insync.replicas 2
