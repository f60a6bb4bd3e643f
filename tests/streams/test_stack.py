"""The local stack really serves Kafka, Redis and Prometheus (no mocks)."""

from __future__ import annotations

import json
from pathlib import Path
import time
import urllib.parse
import urllib.request

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from streams import stack as local

pytestmark = pytest.mark.services


def test_kafka_round_trip_on_a_fresh_topic(stack, unique):
    topic = f"{unique}.roundtrip"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, key=f"k{i % 3}".encode(), value=f"v{i}".encode())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, group_id=unique,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    values = sorted(m.value.decode() for m, _ in zip(consumer, range(10)))
    consumer.close()
    assert values == sorted(f"v{i}" for i in range(10))


def test_redis_is_real_and_persists_with_aof(stack, unique):
    client = redis.Redis.from_url(stack.redis_url)
    client.set(f"{unique}:k", "v")
    assert client.get(f"{unique}:k") == b"v"
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("appendfsync")["appendfsync"] == "always"  # a crash loses no acknowledged write
    assert client.info("server")["redis_mode"] == "standalone"


def test_up_again_reuses_the_running_services(stack):
    again = local.up(Path(stack.directory))
    assert again.services["kafka"].pid == stack.services["kafka"].pid
    assert again.redis_url == stack.redis_url


def test_status_json_reports_addresses_and_health(stack, monkeypatch):
    from click.testing import CliRunner

    from streams.cli import main

    monkeypatch.setenv("ENGAGE_STACK_DIR", stack.directory)
    result = CliRunner().invoke(main, ["stack", "status", "--json"])
    info = json.loads(result.output)
    assert result.exit_code == 0
    assert info["kafka_bootstrap"] == stack.kafka_bootstrap and info["redis_url"] == stack.redis_url
    assert info["healthy"]["kafka"] and info["healthy"]["redis"]


def test_status_of_a_missing_stack_exits_1(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from streams.cli import main

    monkeypatch.setenv("ENGAGE_STACK_DIR", str(tmp_path / "none"))
    result = CliRunner().invoke(main, ["stack", "status"])
    assert result.exit_code == 1 and "no stack" in result.output


def test_prometheus_scrapes_a_real_target(prometheus_stack, unique):
    registry = CollectorRegistry()
    gauge = Gauge(f"{unique}_probe", "a probe value", registry=registry)
    gauge.set(42.5)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        local.set_scrape_targets(prometheus_stack, [f"127.0.0.1:{server.server_port}"])
        query = urllib.parse.urlencode({"query": f"{unique}_probe"})
        deadline = time.monotonic() + 30
        value = None
        while time.monotonic() < deadline and value is None:
            with urllib.request.urlopen(f"{prometheus_stack.prometheus_url}/api/v1/query?{query}") as response:
                result = json.load(response)["data"]["result"]
            value = float(result[0]["value"][1]) if result else None
            time.sleep(0.5)
        assert value == 42.5
    finally:
        server.shutdown()
        local.set_scrape_targets(prometheus_stack, [])
