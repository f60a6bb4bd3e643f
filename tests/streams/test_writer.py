"""The batch writer: same result as the pure core, exactly once.

Each test runs on the session's real Redis (tier `services`) and on an in-memory Redis
(tests/streams/memory_redis.py, the fast tier): the same RedisStore, layout and assertions.
"""

from __future__ import annotations

import asyncio

import pytest

from scoring.engine import Outcome, Scorer
from scoring.scores import score_card
from devstack.traffic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, HOUR
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from streams.state.layout import Keys
from tests.builders import CONFIG, DAY0
from tests.streams.support import without_ids




def batches(prefix: str, count: int = 3000, size: int = 200, span: int = 10 * DAY, **settings):
    traffic = TrafficGenerator(TrafficSettings(customers=60, accounts=6, seed=21, prefix=prefix, **settings))
    messages = list(traffic.messages(count, DAY0, span))
    for start in range(0, len(messages), size):
        chunk = messages[start : start + size]
        yield [Incoming(m.value, m.key, "events", 0, start + i) for i, m in enumerate(chunk)], chunk[-1].at_ms


async def run_through_redis(store_of, prefix, work):
    store = store_of(prefix)
    try:
        return await work(store)
    finally:
        await store.close()


def test_redis_state_equals_the_core_fed_the_same_batches(store_of, unique):
    reference = Scorer(CONFIG)

    async def work(store):
        writer = BatchWriter(CONFIG, store)
        outcomes = []
        for batch, now in batches(unique):
            processed = await writer.write(batch, now)
            expected = reference.process_batch([m.value for m in batch], now)
            assert [r.outcome for _, r in processed.outcomes] == [r.outcome for r in expected.results]
            assert [r.reason for _, r in processed.outcomes] == [r.reason for r in expected.results]
            assert [a.to_dict() for a in processed.alerts] == [a.to_dict() for a in expected.alerts]
            assert [r.field for _, r in processed.outcomes] == [r.field for r in expected.results]
            assert processed.cards == expected.cards
            assert processed.cards == [score_card(reference.customers[c], now, CONFIG, detail=False)
                                       for c in expected.touched]
            outcomes += [r.outcome for _, r in processed.outcomes]
        return outcomes, (await store.load(await store.customer_ids())).stored, now

    outcomes, stored, now = asyncio.run(run_through_redis(store_of, unique, work))
    assert Outcome.DUPLICATE in outcomes and Outcome.REJECTED in outcomes
    assert sorted(stored) == sorted(reference.customers)
    for cid, customer in stored.items():
        assert customer.state == without_ids(reference.customers[cid]), cid
        assert customer.alert_states == reference.alert_states.get(cid, {})
        assert customer.snapshot == reference.snapshots.get(cid)


def test_redelivered_batches_change_nothing(store_of, unique):
    async def work(store):
        writer = BatchWriter(CONFIG, store)
        all_batches = list(batches(unique, count=1500, delayed_share=0, late_share=0, malformed_share=0))
        for batch, now in all_batches:
            await writer.write(batch, now)
        before = (await store.load(await store.customer_ids())).stored
        _, last_now = all_batches[-1]
        accepted_again = 0
        for batch, _ in all_batches:  # the whole topic again, as after a crash before any commit
            processed = await writer.write(batch, last_now)
            accepted_again += processed.count(Outcome.ACCEPTED)
        after = (await store.load(await store.customer_ids())).stored
        return before, after, accepted_again

    before, after, accepted_again = asyncio.run(run_through_redis(store_of, unique, work))
    assert accepted_again == 0
    assert {c: r.state for c, r in after.items()} == {c: r.state for c, r in before.items()}


@pytest.mark.parametrize("store_of", [pytest.param("redis", marks=pytest.mark.services)], indirect=True)
def test_concurrent_writers_on_the_same_customers_lose_nothing(store_of, unique):
    """Two owners during a rebalance overlap: optimistic transactions retry, no update is lost."""
    async def work(store_a):
        store_b = store_of(unique)
        try:
            a, b = BatchWriter(CONFIG, store_a), BatchWriter(CONFIG, store_b)
            # all within the allowed lateness, so the order of application cannot matter
            all_batches = list(batches(unique, count=2000, size=50, span=20 * HOUR, member_share=0, delayed_share=0,
                                       late_share=0, malformed_share=0, duplicate_share=0))
            now = all_batches[-1][1]
            await asyncio.gather(
                *(a.write(batch, now) for batch, _ in all_batches[0::2]),
                *(b.write(batch, now) for batch, _ in all_batches[1::2]),
            )
            ids = await store_a.customer_ids()
            records = (await store_a.load(ids)).stored
            seen = {c: {e.decode(): int(ts) for e, ts in await store_a.redis.zrange(
                store_a.keys.seen(c), 0, -1, withscores=True)} for c in ids}
            return all_batches, records, seen, now, store_a.conflicts + store_b.conflicts
        finally:
            await store_b.close()

    all_batches, records, seen, now, conflicts = asyncio.run(run_through_redis(store_of, unique, work))
    reference = Scorer(CONFIG, evaluate_alerts=False)
    for batch, _ in all_batches:
        reference.process_batch([m.value for m in batch], now)
    assert {c: r.state.buckets for c, r in records.items()} == {c: s.buckets for c, s in reference.customers.items()}
    assert seen == {c: s.seen for c, s in reference.customers.items()}
    assert conflicts > 0  # the writers really did collide, and recovered


def test_key_layout_is_cluster_safe_and_prefixed(store_of, unique):
    """Every key is under the prefix; a customer's keys carry its shard's hash tag."""
    async def work(store):
        writer = BatchWriter(CONFIG, store)
        for batch, now in batches(unique, count=300):
            await writer.write(batch, now)
        return [k.decode() for k in await store.redis.keys(f"{unique}:*")], await store.customer_ids()

    keys, customers = asyncio.run(run_through_redis(store_of, unique, work))
    layout = Keys(unique)
    assert customers and all(k.startswith(f"{unique}:") for k in keys)
    for cid in customers:
        tag = layout.tag(Keys.shard_of(cid))
        assert layout.facts(cid) in keys and layout.facts(cid).startswith(tag + ":")
        assert layout.seen(cid).startswith(tag + ":")
    assert not [k for k in keys if ":b:" in k or ":ss:" in k], "a customer is one record (format 5), not hashes"
    tagged = [k for k in keys if k != layout.meta and not k.startswith(f"{unique}:{{g}}")]
    assert all(k.split(":", 2)[1].strip("{}").isdigit() for k in tagged)
    assert any(":acct:" in k for k in keys) and any(k.endswith(":due") for k in keys)
