"""Faults against the real local Kafka and Redis: the end state equals the pure core's, exactly."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.parse

import orjson
import pytest
from kafka import KafkaProducer

from scoring.synthetic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, HOUR
from tests.streams.support import WorkerProcess, now_ms, pipeline_settings, redis_records
from tests.streams.test_pipeline import MESSAGES, reference_for

pytestmark = pytest.mark.services


def paced_producer(stack, topic: str, values_keys: list[tuple[bytes, bytes]], seconds: float) -> threading.Thread:
    def run() -> None:
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=1)
        for key, value in values_keys:
            producer.send(topic, key=key or None, value=value)
            time.sleep(seconds / len(values_keys))
        producer.flush()
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_mid_stream_and_restarted_ends_exactly_like_the_core(stack, unique, tmp_path):
    settings = pipeline_settings(stack, unique)
    traffic = TrafficGenerator(TrafficSettings(customers=120, accounts=12, seed=5, prefix=unique))
    messages = list(traffic.messages(MESSAGES, now_ms() - 5 * DAY, 5 * DAY - HOUR))
    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    restarted = None
    try:
        worker.wait_until(lambda: worker.metrics().get("engagement_assigned_partitions") == 4, "partitions")
        sending = paced_producer(stack, settings.events_topic, [(m.key, m.value) for m in messages], seconds=8)
        worker.wait_until(lambda: worker.metrics()["engagement_events_consumed_total"] >= MESSAGES // 3,
                          "a third of the stream")
        worker.process.send_signal(signal.SIGKILL)           # mid-stream, no goodbye
        worker.process.wait()
        assert sending.is_alive()                            # events were still flowing
        restarted = WorkerProcess(stack, unique, tmp_path, "w1-again")
        sending.join(timeout=60)
        reference, _ = reference_for([m.value for m in messages], now_ms())

        def caught_up() -> bool:
            m = restarted.metrics()
            if m.get("engagement_consumer_lag", 1) != 0 or m.get("engagement_assigned_partitions") != 4:
                return False
            records = redis_records(stack, unique)
            return sorted(records) == sorted(reference.customers) and all(
                r.state == reference.customers[c] for c, r in records.items())

        restarted.wait_until(caught_up, "the restarted worker to end exactly at the core's state", timeout=240)
        as_of = now_ms()
        status, body = restarted.get(f"/kpis?as_of={as_of}")
        assert status == 200 and body == json.loads(orjson.dumps(reference.kpis(as_of).to_dict()))
        for cid in list(reference.customers)[:25]:
            status, body = restarted.get(f"/customers/{urllib.parse.quote(cid)}?as_of={as_of}")
            body.pop("alerts_active")
            assert status == 200 and body == json.loads(orjson.dumps(reference.customer(cid, as_of).to_dict()))
        # the redelivered part was recognised, not counted twice
        assert restarted.metrics()["engagement_events_consumed_total"] < MESSAGES
    finally:
        worker.stop()
        if restarted:
            restarted.stop()
