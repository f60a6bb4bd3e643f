"""The chunked consumer's bookkeeping, without a broker: what a fetch yields and what becomes committable.

The same path under real Kafka, crashes and rebalances is tests/streams/test_faults.py (the
worker's default consumption is `chunked`).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest
from faust.types.tuples import TP

from streams.worker import kafka_transport
from streams.settings import SettingsError, load_settings

TOPIC = "engagement.events"


def record(partition: int, offset: int, value: bytes = b"{}", timestamp: int | None = 1_700_000_000_000):
    """What aiokafka's fetch hands the consumer (the fields the chunk reads)."""
    return SimpleNamespace(topic=TOPIC, partition=partition, offset=offset, timestamp=timestamp, timestamp_type=0,
                           headers=[], key=b"c1", value=value, checksum=None, serialized_key_size=2,
                           serialized_value_size=len(value))


@pytest.fixture
def consumer():
    kafka_transport.register()
    app = faust.App("transport-test", broker=f"{kafka_transport.SCHEME}://127.0.0.1:1", autodiscover=False)
    app.topic(TOPIC, schema=kafka_transport.ChunkSchema())
    app.topics.acking_topics.add(TOPIC)   # as the agent's subscription does
    consumer = app.consumer
    assert isinstance(consumer, kafka_transport.ChunkedConsumer)
    consumer.highwater = lambda tp: None   # no broker to ask
    return consumer


def acked(consumer, chunk) -> None:
    chunk.tracked = True
    consumer.track_message(chunk)
    assert consumer.ack(chunk)


def test_an_acked_chunk_makes_every_offset_in_it_committable(consumer):
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 100   # resumed from a commit
    chunk = consumer._chunk(tp, [record(0, offset) for offset in range(100, 150)], generation_id=0)
    assert (chunk.first_offset, chunk.offset, len(chunk.value)) == (100, 149, 50)
    acked(consumer, chunk)
    assert consumer._new_offset(tp) == 150


def test_nothing_past_a_chunk_still_in_flight_is_committable(consumer):
    tp = TP(TOPIC, 0)
    first = consumer._chunk(tp, [record(0, offset) for offset in range(0, 10)], generation_id=0)
    in_flight = consumer._chunk(tp, [record(0, offset) for offset in range(10, 20)], generation_id=0)
    after = consumer._chunk(tp, [record(0, offset) for offset in range(20, 30)], generation_id=0)
    acked(consumer, first)
    acked(consumer, after)   # the agent never acks out of order; the offsets still must not pass `in_flight`
    assert consumer._new_offset(tp) == 10
    acked(consumer, in_flight)
    assert consumer._new_offset(tp) == 30


def test_a_revoked_partition_forgets_its_chunks(consumer):
    tp = TP(TOPIC, 3)
    consumer._chunk(tp, [record(3, 5), record(3, 6)], generation_id=0)
    asyncio.run(consumer.on_partitions_revoked({tp}))
    assert tp not in consumer._chunk_starts


def test_a_fetch_yields_one_chunk_per_partition_in_offset_order(consumer):
    fetched = {TP(TOPIC, 0): [record(0, o) for o in range(7)], TP(TOPIC, 1): [record(1, o) for o in range(3, 5)]}

    async def wait_next_records(timeout: float):
        return fetched, set(fetched)

    consumer._wait_next_records = wait_next_records
    consumer.flow_active = True

    async def fetch():
        return [(tp, chunk) async for tp, chunk in consumer.getmany(timeout=0.01)]

    chunks = asyncio.run(fetch())
    assert [(tp.partition, c.first_offset, c.offset, [r.offset for r in c.value]) for tp, c in chunks] == [
        (0, 0, 6, list(range(7))), (1, 3, 4, [3, 4])]


def test_a_fetch_during_a_rebalance_yields_nothing(consumer):
    async def wait_next_records(timeout: float):
        return {TP(TOPIC, 0): [record(0, 0)]}, {TP(TOPIC, 0)}

    consumer._wait_next_records = wait_next_records
    consumer.flow_active = False
    seeks = []

    async def perform_seek():
        seeks.append(True)

    consumer.perform_seek = perform_seek

    async def fetch():
        return [item async for item in consumer.getmany(timeout=0.01)]

    assert asyncio.run(fetch()) == [] and seeks == [True]


def test_the_chunk_schema_hands_the_records_through_undecoded(consumer):
    tp = TP(TOPIC, 0)
    chunk = consumer._chunk(tp, [record(0, 0, b"not json"), record(0, 1, b"\xff")], generation_id=0)
    decode = kafka_transport.ChunkSchema().compile(consumer.app)
    event = asyncio.run(decode(chunk))
    assert [r.value for r in event.value] == [b"not json", b"\xff"]


def test_the_producer_is_idempotent_with_acks_all(consumer):
    producer = consumer.app.producer
    assert isinstance(producer, kafka_transport.IdempotentProducer)
    settings = producer._settings_extra()
    assert settings["enable_idempotence"] is True and settings["acks"] == "all"


def test_another_faust_version_is_refused_naming_the_setting():
    kafka_transport.check_faust_version(kafka_transport.VALIDATED_FAUST)
    with pytest.raises(SettingsError) as refused:
        kafka_transport.check_faust_version("0.16.0")
    message = str(refused.value)
    assert "ENGAGE_CONSUMPTION" in message and "0.16.0" in message and "\n" not in message


def test_consumption_is_chunked_by_default_and_checked():
    assert load_settings(env={"ENGAGE_KAFKA_BOOTSTRAP": "k:9092", "ENGAGE_REDIS_URL": "redis://r"}).consumption == \
        "chunked"
    with pytest.raises(SettingsError, match="ENGAGE_CONSUMPTION: must be one of chunked, stock"):
        load_settings(env={"ENGAGE_KAFKA_BOOTSTRAP": "k:9092", "ENGAGE_REDIS_URL": "redis://r",
                           "ENGAGE_CONSUMPTION": "fast"})
