"""No poison pill: fuzzed messages (up to ~900 kB) interleaved with good events flow through a
real worker; each bad one lands in the dead-letter topic with its reason and the partition
keeps going."""

from __future__ import annotations

import json
import random
from collections import Counter

import orjson
import pytest
from kafka import KafkaProducer

from scoring.engine import Outcome, Scorer
from tests.builders import CONFIG, ev
from tests.scoring.test_fuzz import mutate, weird_event
from tests.streams.support import WorkerProcess, consume_all, now_ms, pipeline_settings

pytestmark = pytest.mark.services


def customer_key(value: bytes) -> bytes:
    for line in value.split(b"\n"):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        obj = obj[0] if isinstance(obj, list) and obj else obj
        if isinstance(obj, dict) and isinstance(obj.get("customer_id"), str):
            return obj["customer_id"].encode("utf-8", "replace")
        break
    return b"unparseable"


def test_fuzzed_messages_are_dead_lettered_and_the_partitions_keep_flowing(stack, unique, tmp_path):
    settings = pipeline_settings(stack, unique)
    rng = random.Random(7)
    start = now_ms() - 3_600_000
    good = [json.dumps(ev(f"{unique}c{i % 20}", "like", start + i * 1000, event_id=f"{unique}g{i}")).encode()
            for i in range(400)]
    values = []
    for i, value in enumerate(good):
        values.append(value)
        if i % 2 == 0:
            bad = weird_event(rng) if i % 4 == 0 else mutate(rng, value)
            values.append(bad[:900_000])          # under the broker's 1 MB message limit
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    for value in values:   # keyed by the customer named, as producers do: per-customer order holds
        producer.send(settings.events_topic, key=customer_key(value), value=value)
    producer.flush()
    producer.close()
    assert sum(len(v) > 100_000 for v in values) > 0
    assert len({customer_key(v) for v in values}) > 4   # several partitions carry bad input

    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    try:
        reference = Scorer(CONFIG)
        expected = Counter()
        for value in values:
            for result in reference.process_message(value, now_ms()):
                expected[result.outcome] += 1
        events = sum(expected.values())
        worker.wait_until(lambda: worker.metrics()["engagement_events_consumed_total"] == events,
                          f"all {events} events consumed")
        metrics = worker.metrics()
        assert metrics["engagement_events_processed_total"] == expected[Outcome.ACCEPTED] >= 400
        rejected = sum(v for k, v in metrics.items() if k.startswith("engagement_events_rejected_total"))
        assert rejected == expected[Outcome.REJECTED] > 0
        dlq = consume_all(stack, settings.dlq_topic)
        assert len(dlq) == rejected and all(json.loads(v)["reason"] for _, v in dlq)
        assert metrics["engagement_consumer_lag"] == 0 and worker.get("/readyz")[0] == 200
    finally:
        worker.stop()


def test_a_message_the_worker_fails_on_every_time_is_quarantined_not_a_blocked_partition(stack, unique, tmp_path):
    """A corrupt stored record makes every batch with that customer fail the same way: after 3
    tries the batch is applied message by message, and that customer's messages go to the DLQ as
    `processing_error`, while every other customer's events are scored."""
    import redis

    from streams.state.layout import Keys

    settings = pipeline_settings(stack, unique)
    broken, fine = f"{unique}broken", [f"{unique}ok{i}" for i in range(6)]
    client = redis.Redis.from_url(stack.redis_url)
    client.set(Keys(unique).facts(broken), b"0" * 19 + b"\xc1not a record")  # corrupted by hand, outside the worker
    client.close()
    start = now_ms() - 600_000
    sent = [(cid, json.dumps(ev(cid, "like", start + i * 1000, event_id=f"{unique}e{i}")).encode())
            for i, cid in enumerate([broken, *fine] * 5)]
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for cid, value in sent:
        producer.send(settings.events_topic, key=cid.encode(), value=value)
    producer.flush()
    producer.close()

    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    try:
        worker.wait_until(lambda: worker.metrics()["engagement_events_consumed_total"] == len(sent), "every event")
        metrics = worker.metrics()
        assert metrics["engagement_events_processed_total"] == 5 * len(fine)
        assert metrics['engagement_events_rejected_total{reason="processing_error"}'] == 5
        dlq = [json.loads(v) for _, v in consume_all(stack, settings.dlq_topic)]
        assert len(dlq) == 5 and {d["reason"] for d in dlq} == {"processing_error"}
        assert all(d["source"]["key"] == broken and "FormatError" in d["detail"] for d in dlq)
        assert sorted(orjson.loads(d["original"]["text"])["event_id"] for d in dlq) == sorted(
            json.loads(v)["event_id"] for cid, v in sent if cid == broken)
        for cid in fine:
            status, body = worker.get(f"/customers/{cid}")
            assert status == 200 and body["breakdown"], cid
        assert metrics["engagement_consumer_lag"] == 0
        worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness")
    finally:
        worker.stop()
