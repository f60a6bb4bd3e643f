"""Redis failing over under a running worker: with ENGAGE_REDIS_MIN_REPLICAS=1 the end state equals
the pure core's exactly; with 0 the same run loses committed events (so the test can fail).

Real services: a local Redis Cluster of three primaries with a replica each, and a primary with its
replica behind three Sentinels, both of this module's own (their roles change here); the session's
Kafka. A replica "loses its link" by being stopped (SIGSTOP) and then killed: what its socket held
unread is lost with it, as with a broken link.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
from pathlib import Path

import pytest
import redis

from devstack import stack as local
from devstack.processes import reap, spawn, wait_ready
from devstack.redis import SENTINEL_MASTER, SENTINELS, cluster_node_ok, replica_of
from tests.streams.support import ApiProcess, now_ms, redis_records, without_ids
from tests.streams.test_faults import committed_offsets, consumed, ends_like_the_core, flowing, settled_offsets
from tests.streams.test_pipeline import reference_for

pytestmark = pytest.mark.services

WAIT_S = "0.5"      # ENGAGE_REDIS_REPLICA_TIMEOUT_S: a missing replica shows within a second


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("replicated-cluster")
    try:
        yield local.cluster_up(directory, log=print, replicas=1)
    finally:
        local.cluster_down(directory, purge=True)


@pytest.fixture
def sentinel_redis(tmp_path_factory):
    """A Sentinel setup of its own per test: a failover test leaves it changed, and one that fails
    part-way (a primary still down) must not take the next test with it."""
    directory = tmp_path_factory.mktemp("sentinel-redis")
    try:
        yield local.sentinel_up(directory, log=print)
    finally:
        local.sentinel_down(directory, purge=True)


def cluster_env(cluster: local.Stack, min_replicas: int) -> dict[str, str]:
    return {"ENGAGE_REDIS_URL": cluster.redis_cluster_url, "ENGAGE_REDIS_CLUSTER": "true",
            "ENGAGE_REDIS_MIN_REPLICAS": str(min_replicas), "ENGAGE_REDIS_REPLICA_TIMEOUT_S": WAIT_S}


def sentinel_env(setup: local.Stack, min_replicas: int) -> dict[str, str]:
    return {"ENGAGE_REDIS_SENTINELS": setup.redis_sentinels, "ENGAGE_REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
            "ENGAGE_REDIS_MIN_REPLICAS": str(min_replicas), "ENGAGE_REDIS_REPLICA_TIMEOUT_S": WAIT_S}


def primary_of_shard(cluster: local.Stack, prefix: str, shard: int = 0) -> str:
    """The name of the node that is primary for the slot of one state shard now."""
    client = redis.RedisCluster.from_url(cluster.redis_cluster_url)
    try:
        port = client.get_node_from_key(f"{prefix}:{{{shard}}}:sums").port
    finally:
        client.close()
    return next(name for name, service in cluster.services.items() if service.port == port)


def kill(service: local.Service) -> None:
    os.killpg(service.pid, signal.SIGKILL)
    reap(service.pid)
    while service.alive():
        time.sleep(0.05)


def start_again(stack: local.Stack, name: str) -> None:
    """Start a killed node again with its command, its data and its directory."""
    service = stack.services[name]
    cwd = Path(service.log).parent
    service.pid = spawn(json.loads((cwd / "command.json").read_text()), Path(service.log), cwd)
    stack.save()


def lose_a_primary_whose_replica_lags(cluster: local.Stack, prefix: str, lag_s: float) -> None:
    """The replica of shard 0's primary stops taking the stream; `lag_s` later the primary dies, the
    replica dies too and comes back from its own AOF without what it never read, and is promoted;
    the old primary returns as its replica."""
    primary = primary_of_shard(cluster, prefix)
    replica = replica_of(cluster.services, primary)
    assert replica, f"no replica of {primary}"
    os.killpg(cluster.services[replica].pid, signal.SIGSTOP)
    time.sleep(lag_s)
    kill(cluster.services[primary])
    kill(cluster.services[replica])
    start_again(cluster, replica)
    wait_ready(cluster.services[replica], lambda s: _answers(s))
    client = redis.Redis.from_url(cluster.services[replica].address)
    try:
        client.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        deadline = time.monotonic() + 30
        while client.info("replication").get("role") != "master":
            assert time.monotonic() < deadline, f"{replica} was not promoted"
            time.sleep(0.1)
    finally:
        client.close()
    start_again(cluster, primary)
    nodes = len([n for n in cluster.services if n.startswith("redis-cluster-")])
    for name in (primary, replica):
        wait_ready(cluster.services[name], lambda s: cluster_node_ok(s, nodes))
    deadline = time.monotonic() + 60
    while replica_of(cluster.services, replica) != primary:
        assert time.monotonic() < deadline, f"{primary} did not come back as the replica of {replica}"
        time.sleep(0.2)


def _answers(service: local.Service) -> bool:
    client = redis.Redis.from_url(service.address, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def test_a_primary_lost_before_its_replica_had_the_writes_loses_nothing_with_min_replicas_1(
        stack, replicated_cluster, unique, start):
    env = cluster_env(replicated_cluster, 1)
    worker, messages, sending = flowing(stack, unique, start, seed=21, seconds=14, until=1 / 5, env=env)
    assert "ENGAGE_REDIS_MIN_REPLICAS" not in worker.log.read_text()     # no warning: it waits for them
    lose_a_primary_whose_replica_lags(replicated_cluster, unique, lag_s=4)
    sending.finish(timeout=120)
    assert worker.metrics()["engagement_redis_replica_waits_failed_total"] > 0   # it did wait for the replica
    ends_like_the_core(stack, unique, worker, messages, records=lambda: redis_records(
        stack, unique, replicated_cluster.redis_cluster_url))


def test_the_same_failover_with_min_replicas_0_loses_committed_events(stack, replicated_cluster, unique, start):
    """The same run without waiting for the replica: the promoted replica lacks events whose offsets
    were committed, so they are never redelivered and the end state is not the core's."""
    env = cluster_env(replicated_cluster, 0)
    worker, messages, sending = flowing(stack, unique, start, seed=21, seconds=14, until=1 / 5, env=env)
    warnings = [line for line in worker.log.read_text().splitlines() if "ENGAGE_REDIS_MIN_REPLICAS is 0" in line]
    assert len(warnings) == 1 and warnings[0].startswith("engage worker: warning: Redis has 1 replica(s)"), warnings
    lose_a_primary_whose_replica_lags(replicated_cluster, unique, lag_s=4)
    sending.finish(timeout=120)
    worker.wait_until(lambda: worker.metrics().get("engagement_consumer_lag", 1) == 0
                      and consumed(worker) >= len(messages), "the stream to be consumed")
    reference, _ = reference_for([m.value for m in messages], now_ms())
    states = redis_records(stack, unique, replicated_cluster.redis_cluster_url)
    differing = [c for c in reference.customers if states.get(c) != without_ids(reference.customers[c])]
    assert differing, "nothing was lost: the failover did not take committed writes with it"


def sentinel_roles(setup: local.Stack) -> tuple[str, str]:
    """(primary, replica) of the Sentinel setup now."""
    roles = {}
    for name in ("redis-primary", "redis-replica"):
        client = redis.Redis.from_url(setup.services[name].address)
        try:
            roles[client.info("replication")["role"]] = name
        finally:
            client.close()
    return roles["master"], roles["slave"]


def sentinel_records(setup: local.Stack, prefix: str) -> dict:
    primary, _ = sentinel_roles(setup)
    return redis_records(setup, prefix, url=setup.services[primary].address)


def test_a_sentinel_failover_mid_stream_ends_exactly_like_the_core(stack, sentinel_redis, unique, start, tmp_path):
    env = sentinel_env(sentinel_redis, 1)
    worker, messages, sending = flowing(stack, unique, start, seed=22, seconds=14, until=1 / 4, env=env)
    reader = ApiProcess(stack, unique, tmp_path, extra_env=env)       # `engage api` follows it too
    reader.wait_until(lambda: reader.get("/readyz")[0] == 200, "engage api to serve")
    primary, replica = sentinel_roles(sentinel_redis)
    kill(sentinel_redis.services[primary])                 # the Sentinels promote the replica
    deadline = time.monotonic() + 120        # a Sentinel starved for 2 s stays in TILT mode for 30 s
    while sentinel_roles_or_none(sentinel_redis, replica) != "master":
        assert time.monotonic() < deadline, f"the Sentinels did not promote the replica:\n{sentinel_logs(sentinel_redis)}"
        time.sleep(0.2)
    start_again(sentinel_redis, primary)                   # back as a replica of the new primary
    sending.finish(timeout=120)
    ends_like_the_core(stack, unique, worker, messages, records=lambda: sentinel_records(sentinel_redis, unique))
    assert worker.metrics()["engagement_batch_retries_total"] > 0      # the same process lived through it
    try:                                      # the same `engage api` process reads the new primary
        as_of = now_ms()
        for cid in sorted({m.key.decode() for m in messages if m.key})[:20]:
            path = f"/customers/{urllib.parse.quote(cid)}?as_of={as_of}"
            assert reader.get(path) == worker.get(path), cid
        assert reader.get(f"/kpis?as_of={as_of}") == worker.get(f"/kpis?as_of={as_of}")
    finally:
        reader.stop()
    # one primary and one replica again (the Sentinels may have moved the primary more than once)
    assert set(sentinel_roles(sentinel_redis)) == {primary, replica}


def sentinel_logs(setup: local.Stack, lines: int = 25) -> str:
    """The end of each Sentinel's log: why a failover did not happen (TILT, votes, no good replica)."""
    return "\n".join(f"--- {name}\n" + "\n".join(Path(setup.services[name].log).read_text().splitlines()[-lines:])
                     for name in SENTINELS)


def sentinel_roles_or_none(setup: local.Stack, name: str) -> str | None:
    client = redis.Redis.from_url(setup.services[name].address, socket_timeout=2, socket_connect_timeout=2)
    try:
        return client.info("replication")["role"]
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def test_a_replica_that_stays_down_stops_commits_until_it_returns(stack, sentinel_redis, unique, start):
    env = sentinel_env(sentinel_redis, 1)
    worker, messages, sending = flowing(stack, unique, start, seed=23, seconds=24, until=1 / 6, env=env)
    _, replica = sentinel_roles(sentinel_redis)
    os.killpg(sentinel_redis.services[replica].pid, signal.SIGSTOP)
    try:
        worker.wait_until(lambda: worker.get("/readyz")[0] == 503, "/readyz to say 503")
        status, body = worker.get("/readyz")
        assert "replicas" in str(body), body
        before = settled_offsets(stack, unique)    # what was confirmed before is committed, then nothing
        for _ in range(12):
            time.sleep(0.25)
            assert committed_offsets(stack, unique) == before, "an offset was committed past an unconfirmed write"
        assert sending.is_alive() and worker.metrics()["engagement_redis_replica_waits_failed_total"] > 0
    finally:
        os.killpg(sentinel_redis.services[replica].pid, signal.SIGCONT)
    sending.finish(timeout=120)
    ends_like_the_core(stack, unique, worker, messages, records=lambda: sentinel_records(sentinel_redis, unique))
