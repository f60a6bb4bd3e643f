"""Faults against the real local Kafka and Redis: the end state equals the pure core's, exactly.

Broker and Redis restarts run on a stack of this module's own, so they disturb no other test.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.parse

import orjson
import pytest
from kafka import KafkaProducer

from streams import stack as local

from scoring.synthetic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, HOUR
from tests.streams.support import WorkerProcess, now_ms, pipeline_settings, redis_records
from tests.streams.test_pipeline import MESSAGES, reference_for

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    """A Kafka and a Redis for this module alone: the restarts here must not reach other tests."""
    directory = tmp_path_factory.mktemp("own-stack")
    yield local.up(directory, log=print)
    local.down(directory, purge=True)


def generated(unique: str, seed: int) -> list:
    traffic = TrafficGenerator(TrafficSettings(customers=120, accounts=12, seed=seed, prefix=unique))
    return list(traffic.messages(MESSAGES, now_ms() - 5 * DAY, 5 * DAY - HOUR))


def paced_producer(stack, topic: str, values_keys: list[tuple[bytes, bytes]], seconds: float) -> threading.Thread:
    """Sends at an even pace from a thread; idempotent, so a broker outage neither loses nor reorders."""

    def run() -> None:
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=1,
                                 enable_idempotence=True, delivery_timeout_ms=300_000)
        for key, value in values_keys:
            producer.send(topic, key=key or None, value=value)
            time.sleep(seconds / len(values_keys))
        producer.flush()
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def consumed(worker: WorkerProcess) -> float:
    return worker.metrics()["engagement_events_consumed_total"]


def owns_all_partitions(worker: WorkerProcess) -> bool:
    return worker.metrics().get("engagement_assigned_partitions") == 4


def ends_like_the_core(stack, unique: str, worker: WorkerProcess, messages: list, timeout: float = 240) -> None:
    """Waits until Redis holds exactly the core's state over `messages`; then the API and KPIs must agree."""
    reference, _ = reference_for([m.value for m in messages], now_ms())

    def caught_up() -> bool:
        m = worker.metrics()
        if m.get("engagement_consumer_lag", 1) != 0 or m.get("engagement_assigned_partitions") != 4:
            return False
        records = redis_records(stack, unique)
        return sorted(records) == sorted(reference.customers) and all(
            r.state == reference.customers[c] for c, r in records.items())

    worker.wait_until(caught_up, "the worker to end exactly at the core's state", timeout=timeout)
    as_of = now_ms()
    status, body = worker.get(f"/kpis?as_of={as_of}")
    assert status == 200 and body == json.loads(orjson.dumps(reference.kpis(as_of).to_dict()))
    for cid in list(reference.customers)[:25]:
        status, body = worker.get(f"/customers/{urllib.parse.quote(cid)}?as_of={as_of}")
        body.pop("alerts_active")
        assert status == 200 and body == json.loads(orjson.dumps(reference.customer(cid, as_of).to_dict()))
    worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness after the fault")


def test_a_worker_killed_mid_stream_and_restarted_ends_exactly_like_the_core(stack, unique, tmp_path):
    settings = pipeline_settings(stack, unique)
    messages = generated(unique, seed=5)
    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    restarted = None
    try:
        worker.wait_until(lambda: owns_all_partitions(worker), "partitions")
        sending = paced_producer(stack, settings.events_topic, [(m.key, m.value) for m in messages], seconds=8)
        worker.wait_until(lambda: consumed(worker) >= MESSAGES // 3, "a third of the stream")
        worker.process.send_signal(signal.SIGKILL)           # mid-stream, no goodbye
        worker.process.wait()
        assert sending.is_alive()                            # events were still flowing
        restarted = WorkerProcess(stack, unique, tmp_path, "w1-again")
        sending.join(timeout=60)
        ends_like_the_core(stack, unique, restarted, messages)
        # the redelivered part was recognised, not counted twice
        assert consumed(restarted) < MESSAGES
    finally:
        worker.stop()
        if restarted:
            restarted.stop()


def test_a_second_worker_joining_and_leaving_mid_stream_ends_exactly_like_the_core(stack, unique, tmp_path):
    settings = pipeline_settings(stack, unique)
    messages = generated(unique, seed=6)
    first = WorkerProcess(stack, unique, tmp_path, "w1")
    second = None
    try:
        first.wait_until(lambda: owns_all_partitions(first), "partitions")
        sending = paced_producer(stack, settings.events_topic, [(m.key, m.value) for m in messages], seconds=30)
        first.wait_until(lambda: consumed(first) >= MESSAGES // 10, "a tenth of the stream")
        second = WorkerProcess(stack, unique, tmp_path, "w2")
        second.wait_until(lambda: consumed(second) > 0 and 0 < second.metrics()["engagement_assigned_partitions"] < 4,
                          "the joining worker to take partitions and score")
        assert first.metrics()["engagement_assigned_partitions"] < 4      # the group really rebalanced
        assert sending.is_alive()                                          # ... while events flowed
        second.stop()                                                      # and it leaves, mid-stream
        assert sending.is_alive()
        first.wait_until(lambda: owns_all_partitions(first), "the first worker to take back every partition")
        sending.join(timeout=60)
        ends_like_the_core(stack, unique, first, messages)
    finally:
        first.stop()
        if second:
            second.stop()


def test_a_broker_restart_under_a_running_worker_needs_no_human(own_stack, unique, tmp_path):
    settings = pipeline_settings(own_stack, unique)
    messages = generated(unique, seed=7)
    worker = WorkerProcess(own_stack, unique, tmp_path, "w1")
    try:
        worker.wait_until(lambda: owns_all_partitions(worker), "partitions")
        sending = paced_producer(own_stack, settings.events_topic, [(m.key, m.value) for m in messages], seconds=20)
        worker.wait_until(lambda: consumed(worker) >= MESSAGES // 4, "a quarter of the stream")
        local.restart(own_stack, "kafka", down_s=5)                       # producer and worker both cut off
        assert sending.is_alive()
        sending.join(timeout=120)
        assert not sending.is_alive()
        ends_like_the_core(own_stack, unique, worker, messages)
        assert worker.process.poll() is None                              # the same process, no restart by hand
    finally:
        worker.stop()


def test_redis_killed_and_restarted_from_its_aof_then_lost_and_replayed(own_stack, unique, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from streams.cli import main

    settings = pipeline_settings(own_stack, unique)
    messages = generated(unique, seed=8)
    worker = WorkerProcess(own_stack, unique, tmp_path, "w1")
    try:
        worker.wait_until(lambda: owns_all_partitions(worker), "partitions")
        sending = paced_producer(own_stack, settings.events_topic, [(m.key, m.value) for m in messages], seconds=15)
        worker.wait_until(lambda: consumed(worker) >= MESSAGES // 4, "a quarter of the stream")
        local.restart(own_stack, "redis", down_s=3, kill=True)            # a crash: only the AOF survives
        assert sending.is_alive()
        sending.join(timeout=60)
        ends_like_the_core(own_stack, unique, worker, messages)
        assert worker.metrics()["engagement_batch_retries_total"] > 0   # it did notice the outage
    finally:
        worker.stop()
    live = redis_records(own_stack, unique)

    # Redis loss: everything flushed; `engage replay` rebuilds it from the events topic
    import redis

    client = redis.Redis.from_url(own_stack.redis_url)
    client.flushall()
    client.close()
    assert redis_records(own_stack, unique) == {}
    monkeypatch.setenv("ENGAGE_KAFKA_BOOTSTRAP", own_stack.kafka_bootstrap)
    monkeypatch.setenv("ENGAGE_REDIS_URL", own_stack.redis_url)
    result = CliRunner().invoke(main, ["replay", "--topic-prefix", f"{unique}.", "--key-prefix", unique])
    assert result.exit_code == 0, result.output
    rebuilt = redis_records(own_stack, unique)
    assert sorted(rebuilt) == sorted(live)
    assert all(rebuilt[c].state == live[c].state for c in live)
    restarted = WorkerProcess(own_stack, unique, tmp_path, "w2")
    try:
        ends_like_the_core(own_stack, unique, restarted, messages)
    finally:
        restarted.stop()
