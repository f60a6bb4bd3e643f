"""Redis never silently drops state: a Redis that may evict is refused, a full one is waited out.

A Redis of the test's own is started with a small `maxmemory` (single node); on the local
Redis Cluster every master's `maxmemory` is lowered for the test and restored after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from kafka import KafkaProducer

from devstack.traffic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, HOUR
from devstack import stack as local
from devstack.processes import ensure_binary, free_port
from streams.state.store import EvictionPolicyError, RedisStore
from tests.streams.support import WorkerProcess, now_ms, pipeline_settings, redis_records, without_ids
from tests.streams.test_pipeline import reference_for

pytestmark = pytest.mark.services


@contextlib.contextmanager
def own_redis(tmp_path: Path, *args: str):
    """A redis-server of this test's own (no persistence), stopped at the end."""
    port = free_port()
    process = subprocess.Popen([ensure_binary("redis-server", "redis-server"), "--port", str(port), "--bind",
                                "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield url, client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def master_clients(cluster) -> list[redis.Redis]:
    return [redis.Redis.from_url(cluster.services[name].address) for name in local.CLUSTER_NODES]


def test_a_worker_refuses_a_redis_that_may_evict_in_one_line_naming_the_setting(stack, unique, tmp_path):
    with own_redis(tmp_path, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru") as (url, _):
        env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "ENGAGE_REDIS_URL": url}
        for command in (["worker", "--key-prefix", unique], ["replay", "--key-prefix", unique]):
            result = subprocess.run([sys.executable, "-m", "streams.cli", *command], env=env, capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 1, result.stderr
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
            assert len(errors) == 1 and "maxmemory-policy is 'allkeys-lru'" in errors[0], result.stderr
            assert "maxmemory-policy noeviction" in errors[0]


def test_every_master_of_a_cluster_is_checked_for_its_eviction_policy(own_redis_cluster, unique):
    redis_cluster = own_redis_cluster     # it changes a master's policy: a cluster no other test shares
    clients = master_clients(redis_cluster)
    victim = clients[1]

    async def check() -> None:
        store = RedisStore.from_url(redis_cluster.redis_cluster_url, unique, cluster=True)
        try:
            await store.check_eviction_policy()
        finally:
            await store.close()

    try:
        asyncio.run(check())                                     # noeviction everywhere: fine
        victim.config_set("maxmemory-policy", "volatile-lru")
        with pytest.raises(EvictionPolicyError, match="'volatile-lru' on .*:" + str(redis_cluster.services[
                local.CLUSTER_NODES[1]].port)):
            asyncio.run(check())
    finally:
        victim.config_set("maxmemory-policy", "noeviction")
        for client in clients:
            client.close()


def stream(unique: str, count: int = 600) -> list:
    traffic = TrafficGenerator(TrafficSettings(customers=60, accounts=6, seed=17, prefix=unique))
    return list(traffic.messages(count, now_ms() - 3 * DAY, 3 * DAY - HOUR))


@pytest.mark.parametrize("redis_kind", ["single", "cluster"])
def test_a_redis_at_maxmemory_is_waited_out_unready_counted_and_nothing_is_lost(stack, unique, tmp_path, redis_kind,
                                                                                request):
    settings = pipeline_settings(stack, unique)
    with contextlib.ExitStack() as cleanup:
        if redis_kind == "single":
            url, client = cleanup.enter_context(own_redis(tmp_path, "--maxmemory", "16mb",
                                                          "--maxmemory-policy", "noeviction"))
            extra, cluster_url, masters = {"ENGAGE_REDIS_URL": url}, None, [client]
        else:
            cluster = request.getfixturevalue("own_redis_cluster")   # its masters' maxmemory changes
            cluster_url = url = cluster.redis_cluster_url
            masters = master_clients(cluster)
            extra = {"ENGAGE_REDIS_URL": url, "ENGAGE_REDIS_CLUSTER": "true"}
            cleanup.callback(lambda: [(m.config_set("maxmemory", 0), m.close()) for m in masters])
        worker = WorkerProcess(stack, unique, tmp_path, "w1", extra_env=extra)
        cleanup.callback(worker.stop)
        worker.wait_until(lambda: worker.metrics().get("engagement_assigned_partitions") == 4, "partitions")

        # Redis full: a ballast past the small maxmemory (single), or every master's limit below its use
        if redis_kind == "single":
            memory = masters[0].info("memory")
            # built inside Redis: a SET of that size would be refused for its own query buffer
            masters[0].eval("redis.call('SET', KEYS[1], string.rep('x', tonumber(ARGV[1])))", 1, f"{unique}-ballast",
                            int(memory["maxmemory"]) - int(memory["used_memory"]) + 2**20)
        else:
            for master in masters:
                master.config_set("maxmemory", 1)
        assert all(m.info("memory")["used_memory"] > int(m.info("memory")["maxmemory"]) for m in masters)

        messages = stream(unique)
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        for message in messages:
            producer.send(settings.events_topic, key=message.key or None, value=message.value)
        producer.flush()
        producer.close()

        def refused() -> bool:
            status, body = worker.get("/readyz")
            return status == 503 and "maxmemory" in body["detail"] and \
                worker.metrics()["engagement_redis_out_of_memory_errors_total"] > 0
        worker.wait_until(refused, "writes refused at maxmemory: /readyz 503 naming it, the OOM counter up")
        assert worker.metrics()["engagement_events_processed_total"] == 0

        # memory is freed: the worker carries on by itself and ends exactly at the core's state
        if redis_kind == "single":
            masters[0].delete(f"{unique}-ballast")
        else:
            for master in masters:
                master.config_set("maxmemory", 0)
        reference, _ = reference_for([m.value for m in messages], now_ms())

        def caught_up() -> bool:
            states = redis_records(stack, unique, cluster_url, url=url)
            return sorted(states) == sorted(reference.customers) and all(
                s == without_ids(reference.customers[c]) for c, s in states.items())

        worker.wait_until(caught_up, "the state to equal the core's after memory was freed")
        worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "ready again")
        # every output published: the last batch's outputs leave the outbox once Kafka has them, a moment
        # after the state they came with is in Redis
        worker.wait_until(lambda: worker.metrics()["engagement_outbox_outputs"] == 0, "the outbox to drain", timeout=60)
