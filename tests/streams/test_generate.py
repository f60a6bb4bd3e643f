"""`engage generate` against the real broker: single events and batch messages kept in partition."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from scoring.messages import unpack
from devstack.cli import main
from tests.builders import CONFIG
from tests.streams.support import pipeline_settings

pytestmark = pytest.mark.services


def records(stack, topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("shape", ["array", "ndjson"])
def test_batch_messages_hold_each_customers_events_in_its_own_partition(stack, unique, shape):
    settings = pipeline_settings(stack, unique)
    result = CliRunner().invoke(main, ["generate", "--kafka", stack.kafka_bootstrap, "--topic-prefix", f"{unique}.",
                                       "--count", "1500", "--customers", "50", "--batch", "40", "--shape", shape,
                                       "--id-prefix", unique, "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sum(json.loads(result.output.strip().splitlines()[-1]).values()) == 1500
    config = CONFIG
    messages = records(stack, settings.events_topic)
    events = 0
    batches = 0
    for record in messages:
        items = unpack(record.value, config)
        events += len(items)
        if len(items) > 1:
            batches += 1
            assert record.value.startswith(b"[") == (shape == "array")
            for item in items:
                if item.event is not None:   # every customer inside belongs to this partition
                    key = item.event.customer_id.encode()
                    assert (murmur2(key) & 0x7FFFFFFF) % settings.partitions == record.partition
    assert events == 1500 and batches >= 1500 // 40


def test_segment_format_sends_track_messages_the_worker_reads_as_events(stack, unique):
    settings = pipeline_settings(stack, unique)
    result = CliRunner().invoke(main, ["generate", "--kafka", stack.kafka_bootstrap, "--topic-prefix", f"{unique}.",
                                       "--count", "600", "--customers", "40", "--format", "segment",
                                       "--id-prefix", unique, "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    messages = records(stack, settings.events_topic)
    tracks = [json.loads(r.value) for r in messages if r.value.startswith(b'{"type":"track"')]
    assert len(messages) == 600 and len(tracks) > 560          # all but the malformed ones
    assert {t["event"] for t in tracks} <= set(CONFIG.mapping)
    read = [item for r in messages for item in unpack(r.value, CONFIG)]
    assert sum(item.event is not None for item in read) >= len(tracks) - 10   # a few carry a bad field on purpose
    assert all(t["userId"] == r.key.decode() for t, r in zip(tracks, (r for r in messages if r.value.startswith(b'{"type":"track"'))))
