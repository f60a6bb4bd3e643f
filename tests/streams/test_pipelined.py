"""The pipelined batch lifecycle (`BatchLifecycle.pipelined`): a batch's replica confirmation,
publishing and acknowledgement run while the next batch is read and scored, and the next batch
writes only once the previous write is confirmed. Without services: the real RedisStore on the
in-memory Redis, its `confirm` (the replicas' `WAIT`) driven by the test.

The same lifecycle against real replicas, a lost primary and a replica that stays down:
tests/streams/test_failover.py.
"""

from __future__ import annotations

import asyncio

from streams.clock import now_ms
from streams.state.replicas import ReplicasUnconfirmed
from tests.builders import ev
from tests.streams.memory_redis import MemoryRedis
from tests.streams.test_worker import SETTINGS, RecordingProducer, batch, runtime


class Timeline:
    """What the store and the consumer were asked, in order; `confirm` waits for the test's go and
    fails `failures` times as replicas that did not answer would."""

    def __init__(self, worker, failures: int = 0) -> None:  # type: ignore[no-untyped-def]
        self.steps: list[str] = []
        self.go = asyncio.Event()
        self.failures = failures
        store = worker.store
        load, write = store.load, store.write_shards

        async def loading(customer_ids, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.steps.append("load " + ",".join(sorted(customer_ids)))
            return await load(customer_ids, *args, **kwargs)

        async def writing(deltas, *args, confirm: bool = True, **kwargs):  # type: ignore[no-untyped-def]
            customers = sorted(d.customer_id for ds in deltas.values() for d in ds)
            self.steps.append(f"write {','.join(customers)}" + ("" if confirm else " unconfirmed"))
            return await write(deltas, *args, confirm=confirm, **kwargs)

        async def confirming(shards) -> None:  # type: ignore[no-untyped-def]
            self.steps.append("confirm")
            await self.go.wait()
            if self.failures:
                self.failures -= 1
                raise ReplicasUnconfirmed("0 of 1 Redis replicas confirmed a write")

        store.load, store.write_shards, store.confirm = loading, writing, confirming

    def acknowledger(self, name: str):  # type: ignore[no-untyped-def]
        async def acknowledge() -> None:
            self.steps.append(f"ack {name}")
        return acknowledge


def test_the_next_batch_is_read_and_scored_while_the_last_is_confirmed_and_written_only_after():
    async def run() -> tuple[list[str], RecordingProducer]:
        producer = RecordingProducer()
        worker = runtime(MemoryRedis(), producer)
        timeline = Timeline(worker)
        at = now_ms() - 60_000
        life = worker.lifecycle
        await life.pipelined(batch(ev("c1", "like", at, event_id="e1")), timeline.acknowledger("first"))
        second = asyncio.create_task(life.pipelined(batch(ev("c2", "like", at, event_id="e2"), start_offset=1),
                                                    timeline.acknowledger("second")))
        while "load c2" not in timeline.steps:
            await asyncio.sleep(0.001)
        for _ in range(20):                   # the second batch is scored, and holds its write
            await asyncio.sleep(0.001)
        timeline.steps.append("go")
        timeline.go.set()
        await second
        await life.drain()
        return timeline.steps, producer

    steps, producer = asyncio.run(run())
    at = steps.index
    assert steps[:2] == ["load c1", "write c1 unconfirmed"]
    assert at("load c2") < at("go") < at("write c2 unconfirmed")      # scored meanwhile, written after
    assert at("confirm") < at("go") < at("ack first") < at("ack second")
    assert steps.count("confirm") == 2 and steps[-1] == "ack second"
    assert [card["customer_id"] for card in producer.on(SETTINGS.scores_topic)] == ["c1", "c2"]   # in batch order


def test_a_write_the_replicas_did_not_confirm_is_made_again_confirmed_before_anything_later():
    async def run() -> tuple[list[str], object, int]:
        producer = RecordingProducer()
        worker = runtime(MemoryRedis(), producer)
        timeline = Timeline(worker, failures=1)
        timeline.go.set()
        at = now_ms() - 60_000
        life = worker.lifecycle
        await life.pipelined(batch(ev("c1", "like", at, event_id="e1")), timeline.acknowledger("first"))
        await life.pipelined(batch(ev("c2", "like", at, event_id="e2"), start_offset=1),
                             timeline.acknowledger("second"))
        await life.drain()
        return timeline.steps, worker, await worker.store.outbox_size()

    steps, worker, left = asyncio.run(run())
    # the rewrite finds e1 already applied (a duplicate): it writes nothing, and is confirmed in its write
    at = steps.index
    assert steps[:2] == ["load c1", "write c1 unconfirmed"] and steps.count("load c1") == 2
    assert at("confirm") < at("write ") < at("write c2 unconfirmed")
    assert steps[-1] == "ack second" and steps.index("ack first") < steps.index("ack second")
    assert worker.metrics.redis_unreplicated._value.get() == 1 and not worker.retry.unready
    # as any retried write: the rewrite counts e1 a duplicate, and the first write's score card, which
    # it does not know of, stays in the outbox for the redrive once its grace has passed
    assert worker.metrics.processed._value.get() == 1 and worker.metrics.deduplicated._value.get() == 1
    assert left == 1


def test_a_cancelled_batch_is_not_acknowledged_and_the_next_write_never_passes_it():
    async def run() -> list[str]:
        worker = runtime(MemoryRedis(), RecordingProducer())
        timeline = Timeline(worker)
        at = now_ms() - 60_000
        life = worker.lifecycle
        await life.pipelined(batch(ev("c1", "like", at, event_id="e1")), timeline.acknowledger("first"))
        while "confirm" not in timeline.steps:
            await asyncio.sleep(0.001)
        life.cancel()                          # the agent stops while the replicas have not answered
        try:
            await life.pipelined(batch(ev("c2", "like", at, event_id="e2"), start_offset=1),
                                 timeline.acknowledger("second"))
        except asyncio.CancelledError:
            timeline.steps.append("cancelled")
        return timeline.steps

    steps = asyncio.run(run())
    assert "ack first" not in steps and "write c2 unconfirmed" not in steps and steps[-1] == "cancelled"


def test_while_a_publish_keeps_failing_no_more_than_two_batches_are_written_and_unpublished():
    async def run() -> tuple[list[str], RecordingProducer]:
        producer = RecordingProducer(failures=10**9)     # Kafka refuses every send until told otherwise
        worker = runtime(MemoryRedis(), producer)
        timeline = Timeline(worker)
        timeline.go.set()
        at = now_ms() - 60_000
        life = worker.lifecycle
        for i in range(1, 3):
            await life.pipelined(batch(ev(f"c{i}", "like", at, event_id=f"e{i}"), start_offset=i),
                                 timeline.acknowledger(f"b{i}"))
        third = asyncio.create_task(life.pipelined(batch(ev("c3", "like", at, event_id="e3"), start_offset=3),
                                                   timeline.acknowledger("b3")))
        for _ in range(200):
            await asyncio.sleep(0.001)
        timeline.steps.append("kafka back")
        producer.failures = 0
        await third
        await life.drain()
        return timeline.steps, producer

    steps, producer = asyncio.run(run())
    at = steps.index
    assert at("load c3") < at("kafka back") < at("write c3 unconfirmed")     # scored, held while b1 is unpublished
    assert "write c2 unconfirmed" in steps[:at("kafka back")]
    assert [s for s in steps if s.startswith("ack")] == ["ack b1", "ack b2", "ack b3"]
    assert [card["customer_id"] for card in producer.on(SETTINGS.scores_topic)] == ["c1", "c2", "c3"]
