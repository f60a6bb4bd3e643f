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

from devstack import stack as local

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


def test_up_again_reuses_the_running_services(stack, stack_view):
    again = local.up(stack_view)
    assert again.services["kafka"].pid == stack.services["kafka"].pid
    assert again.redis_url == stack.redis_url


def test_status_json_reports_addresses_and_health(stack, stack_view, monkeypatch):
    from click.testing import CliRunner

    from devstack.cli import main

    monkeypatch.setenv("ENGAGE_STACK_DIR", str(stack_view))
    result = CliRunner().invoke(main, ["stack", "status", "--json"])
    info = json.loads(result.output)
    assert result.exit_code == 0
    assert info["kafka_bootstrap"] == stack.kafka_bootstrap and info["redis_url"] == stack.redis_url
    assert info["healthy"]["kafka"] and info["healthy"]["redis"]


def test_status_of_a_missing_stack_exits_1(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from devstack.cli import main

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


# --- the local Redis Cluster (three masters, no replicas) ------------------------------------


def _node_clients(cluster):
    return [redis.Redis.from_url(cluster.services[name].address) for name in local.CLUSTER_NODES]


def test_the_redis_cluster_has_three_masters_covering_every_slot(redis_cluster):
    covered: dict[int, int] = {}
    for client in _node_clients(redis_cluster):
        info = client.cluster("info")
        assert info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 3
        assert client.config_get("appendfsync")["appendfsync"] == "always"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.info("server")["redis_mode"] == "cluster"
        client.close()
    first = _node_clients(redis_cluster)[0]
    raw = first.execute_command("CLUSTER", "SLOTS")
    first.close()
    masters = {int(entry[2][1]) for entry in raw}
    for start, end, master, *replicas in raw:
        assert replicas == []
        for slot in range(int(start), int(end) + 1):
            covered[slot] = covered.get(slot, 0) + 1
    assert masters == {redis_cluster.services[name].port for name in local.CLUSTER_NODES}
    assert sorted(covered) == list(range(16384)) and set(covered.values()) == {1}


def test_cluster_up_again_reuses_it_and_status_names_its_url(redis_cluster):
    again = local.cluster_up(Path(redis_cluster.directory))
    assert {n: again.services[n].pid for n in local.CLUSTER_NODES} == {
        n: redis_cluster.services[n].pid for n in local.CLUSTER_NODES}
    info = local.status(Path(redis_cluster.directory))
    assert info["running"] and info["redis_cluster_url"] == redis_cluster.redis_cluster_url
    assert redis_cluster.redis_cluster_url.startswith("redis://127.0.0.1:")


def test_engage_stack_up_redis_cluster_adds_one_to_the_stack(stack, stack_view, monkeypatch):
    from click.testing import CliRunner

    from devstack.cli import main

    monkeypatch.setenv("ENGAGE_STACK_DIR", str(stack_view))
    try:
        result = CliRunner().invoke(main, ["stack", "up", "--redis-cluster"])
        assert result.exit_code == 0, result.output
        url = json.loads(result.stdout)["redis_cluster_url"]
        status = CliRunner().invoke(main, ["stack", "status", "--json"])
        info = json.loads(status.output)
        assert status.exit_code == 0 and info["redis_cluster_url"] == url and info["redis_url"] == stack.redis_url
        assert all(info["healthy"][name] for name in local.CLUSTER_NODES)
    finally:
        local.cluster_down(stack_view, purge=True)
    info = local.status(stack_view)
    assert "redis_cluster_url" not in info and info["running"]        # Kafka and Redis keep running


def test_the_redis_cluster_is_not_part_of_the_secure_stack():
    from click.testing import CliRunner

    from devstack.cli import main

    result = CliRunner().invoke(main, ["stack", "up", "--secure", "--redis-cluster"])
    assert result.exit_code == 2 and "--redis-cluster" in result.stderr and len(result.stderr.splitlines()) == 1


def _with_cluster_client(redis_cluster, work):
    import asyncio

    from streams.state.redis_client import redis_client_from_url

    async def run():
        client = redis_client_from_url(redis_cluster.redis_cluster_url, cluster=True)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_the_cluster_client_reads_and_writes_keys_on_every_node(redis_cluster, unique):
    keys = [f"{unique}:k{i}" for i in range(30)]

    async def work(client):
        for key in keys:
            await client.set(key, key.upper())
        values = [await client.get(key) for key in keys]
        owners = {client.get_node_from_key(key).port for key in keys}
        await client.unlink(*keys)                     # split per slot by the client
        return values, owners, await client.mget_nonatomic(keys)

    values, owners, gone = _with_cluster_client(redis_cluster, work)
    assert values == [key.upper().encode() for key in keys]
    assert owners == {redis_cluster.services[name].port for name in local.CLUSTER_NODES}   # every node served
    assert gone == [None] * len(keys)


def test_a_lua_script_on_one_hash_tag_runs_on_the_cluster(redis_cluster, unique):
    from redis.exceptions import RedisClusterException

    async def work(client):
        script = client.register_script(
            "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])")
        tag = f"{{{unique}}}"
        first = await script(keys=[f"{tag}:a", f"{tag}:n"], args=["x", 5])     # EVALSHA, NOSCRIPT, load, again
        second = await script(keys=[f"{tag}:a", f"{tag}:n"], args=["y", 2])    # EVALSHA
        stored = await client.get(f"{tag}:a")
        try:
            await script(keys=[f"{unique}:a", f"{unique}:b"], args=["z", 1])   # two slots: refused by the client
            refused = None
        except RedisClusterException as exc:
            refused = str(exc)
        return first, second, stored, refused

    first, second, stored, refused = _with_cluster_client(redis_cluster, work)
    assert (first, second, stored) == (5, 7, b"y")
    assert refused and "same key slot" in refused


def test_watch_multi_exec_on_one_hash_tag_through_the_cluster_pipeline(redis_cluster, unique):
    from redis.exceptions import CrossSlotTransactionError, WatchError

    tag = f"{{{unique}}}"

    async def work(client):
        await client.set(f"{tag}:record", "v1")
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(f"{tag}:record", f"{tag}:index")
            read = await pipe.execute_command("MGET", f"{tag}:record", f"{tag}:index")   # pipe.mget is blocked
            pipe.multi()
            pipe.set(f"{tag}:record", "v2")
            pipe.sadd(f"{tag}:index", "member")
            pipe.pexpire(f"{tag}:index", 60_000)
            applied = await pipe.execute()
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(f"{tag}:record")
            await client.set(f"{tag}:record", "someone else")
            pipe.multi()
            pipe.set(f"{tag}:record", "v3")
            try:
                await pipe.execute()
                conflict = False
            except WatchError:
                conflict = True
        try:
            await client.pipeline(transaction=True).set(f"{unique}:a", 1).set(f"{unique}:b", 2).execute()
            cross = False
        except CrossSlotTransactionError:
            cross = True
        return read, applied, conflict, cross, await client.get(f"{tag}:record"), await client.smembers(f"{tag}:index")

    read, applied, conflict, cross, record, index = _with_cluster_client(redis_cluster, work)
    assert read == [b"v1", None] and applied == [True, 1, True]
    assert conflict and cross          # a changed watched key aborts; two slots are refused
    assert record == b"someone else" and index == {b"member"}


def test_a_restarted_cluster_node_comes_back_with_its_keys(own_redis_cluster, unique):
    redis_cluster = own_redis_cluster     # a node is killed: a cluster no other test shares
    node = redis_cluster.services[local.CLUSTER_NODES[1]]
    cluster = redis.RedisCluster.from_url(redis_cluster.redis_cluster_url)
    key = next(k for k in (f"{unique}:{i}" for i in range(1000)) if cluster.get_node_from_key(k).port == node.port)
    cluster.set(key, "kept")
    cluster.close()
    local.restart(redis_cluster, local.CLUSTER_NODES[1], kill=True)   # SIGKILL: the AOF (fsync always) keeps it
    assert local.status(Path(redis_cluster.directory))["running"]     # cluster_state:ok on every node again
    cluster = redis.RedisCluster.from_url(redis_cluster.redis_cluster_url)
    assert cluster.get(key) == b"kept"
    cluster.close()


# --- topics on the one-broker stack ----------------------------------------------------------


def test_topics_on_one_broker_have_one_replica_and_more_is_one_line_naming_the_setting(stack, unique, monkeypatch):
    from click.testing import CliRunner
    from kafka.admin import ConfigResource, ConfigResourceType

    from streams.cli import main

    monkeypatch.setenv("ENGAGE_KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    refused = CliRunner().invoke(main, ["topics", "--topic-prefix", f"{unique}.x."],
                                 env={"ENGAGE_TOPIC_REPLICATION": "3"})
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "ENGAGE_TOPIC_REPLICATION" in refused.stderr and "1 broker" in refused.stderr
    created = CliRunner().invoke(main, ["topics", "--topic-prefix", f"{unique}."])   # auto
    assert created.exit_code == 0 and created.output.count(": created") == 4, created.output
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        (events,) = admin.describe_topics([f"{unique}.engagement.events"])
        assert {len(p["replica_nodes"]) for p in events["partitions"]} == {1}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, f"{unique}.engagement.events")])
        assert configs["topic"][f"{unique}.engagement.events"]["min.insync.replicas"]["value"] == "1"
    finally:
        admin.close()
