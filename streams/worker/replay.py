"""`engage replay`: rebuild Redis state from the retained events topic, from the earliest offset.

It reads every partition up to the end offsets seen at start, in offset order (so each
customer's events arrive in the order the live worker saw them), and applies them with
the same batch writer. Each message's broker append time is its clock, as in the live
worker, so the rebuilt state equals the live one. Stop the workers of a key prefix
before replaying into it, or replay into a fresh prefix and switch readers over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from scoring.config import Config
from streams.security import kafka_options
from streams.settings import Settings
from streams.state.store import RedisStore
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter


async def replay(settings: Settings, config: Config, fresh: bool, batch_size: int = 2000,
                 progress: Callable[[int], None] = lambda _: None) -> int:
    """Returns the number of messages replayed."""
    store = RedisStore.from_settings(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                             client_id="engage-replay", max_poll_records=batch_size, **kafka_options(settings))
    try:
        await store.check_eviction_policy()   # before anything is deleted or written
        if fresh:
            await delete_prefix(store)
        await store.check_layout()   # a fresh prefix is claimed for this layout; an old one is refused
        partitions = [TopicPartition(settings.events_topic, p)
                      for p in sorted(consumer.partitions_for_topic(settings.events_topic) or ())]
        if not partitions:
            raise RuntimeError(f"topic {settings.events_topic!r} does not exist")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        writer = BatchWriter(config, store, outputs=False)
        done = 0
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            polled = consumer.poll(timeout_ms=1000, max_records=batch_size)
            batch = [Incoming.of_record(r) for tp, records in sorted(polled.items(), key=lambda item: item[0].partition)
                     for r in records if r.offset < end[tp]]
            if batch:
                await writer.write(batch, time.time_ns() // 1_000_000)
                done += len(batch)
                progress(done)
        return done
    finally:
        consumer.close()
        await store.close()


async def delete_prefix(store: RedisStore) -> int:
    deleted = 0
    async for key in store.redis.scan_iter(match=f"{store.keys.prefix}:*", count=1000):
        deleted += await store.redis.unlink(key)
    return deleted
