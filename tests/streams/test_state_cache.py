"""The worker's memory of the customers it wrote (streams/state/cache.py): never a different result.

A remembered customer must be exactly what a fresh read of Redis gives, after every batch and
every due sweep, through bucket evictions, sessions closing, dedup ids expiring and alerts;
a writer that remembers must leave Redis exactly as one that reads everything; and a
customer someone else wrote since is read afresh. Each test runs on the session's real
Redis and on the in-memory one (tests/streams/memory_redis.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path


from scoring.config import load_config
from scoring.engine import Scorer
from scoring.scores import score_card
from scoring.timeutil import MINUTE, SECOND
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from streams.state.cache import StateCache
from streams.state.layout import TOKEN_WIDTH
from streams.state.store import RedisStore
from devstack.traffic import TrafficGenerator, TrafficSettings
from tests.builders import DAY0

# the soak's config: one-minute buckets, so that 40 minutes of traffic crosses every boundary
CONFIG = load_config(Path(__file__).resolve().parents[2] / "benchmarks" / "soak.toml")



def minutes_of_traffic(prefix: str, minutes: int = 40, events: int = 4000, size: int = 100):
    """Batches of generator traffic over `minutes` of event time, each with its clock."""
    traffic = TrafficGenerator(TrafficSettings(customers=40, accounts=4, seed=5, prefix=prefix,
                                               max_delay_ms=30 * SECOND, late_by_ms=3 * MINUTE))
    messages = list(traffic.messages(events, DAY0, minutes * MINUTE))
    for start in range(0, len(messages), size):
        chunk = messages[start:start + size]
        yield [Incoming(m.value, m.key, "events", 0, start + i, m.at_ms) for i, m in enumerate(chunk)], chunk[-1].at_ms


async def drive(writer: BatchWriter, prefix: str, after_each=None) -> list:
    """The traffic through `writer`, with a due sweep at every minute boundary; what it published."""
    published = []
    boundary = DAY0 + MINUTE
    for batch, now in minutes_of_traffic(prefix):
        while now >= boundary:
            published.append(("sweep", [o.value for _, o in (await writer.sweep(boundary)).outputs]))
            boundary += MINUTE
            if after_each:
                await after_each()
        processed = await writer.write(batch, now)
        published.append(("batch", [o.value for _, o in processed.outputs],
                          [(r.outcome, r.reason) for _, r in processed.outcomes]))
        if after_each:
            await after_each()
    return published


def comparable(stored):
    """A stored customer without the event ids a batch happened to ask about."""
    return (dataclasses.replace(stored.state, seen={}), stored.alert_states, stored.snapshot, stored.standing)


async def dump(store: RedisStore) -> dict[str, object]:
    """Every key of the prefix and its content, the prefix and write tokens left out."""
    redis, prefix = store.redis, store.keys.prefix
    found: dict[str, object] = {}
    for raw in await redis.keys(f"{prefix}:*"):
        key = raw.decode()
        name = key[len(prefix):]
        kind = name.split(":")[2] if name.count(":") >= 2 else name.lstrip(":")
        if name.endswith(":out:at"):
            kind = "out:at"
        if kind == "f":                              # a customer: its value after its write token
            content = (await redis.get(key))[TOKEN_WIDTH:]
        elif kind in ("sums", "t", "out", "meta", "acct.snap", "kpis", "alert", "alerts.work", "alerts.resolved") \
                or kind.startswith(("sums.seg", "t.seg")):
            content = {k: v for k, v in (await redis.hgetall(key)).items() if k != b"v"}
        elif kind in ("acct", "acct.touched"):
            content = sorted(await redis.smembers(key))
        elif kind == "alerts" and name.endswith(":recent"):
            content = await redis.lrange(key, 0, -1)
        else:
            content = await redis.zrange(key, 0, -1, withscores=True)
        found[name] = content
    return found


def test_remembered_customers_are_what_redis_holds_after_every_batch_and_sweep(store_of, unique):
    async def work():
        store = store_of(unique)
        writer = BatchWriter(CONFIG, store)
        checked = 0

        async def check() -> None:
            nonlocal checked
            remembered = writer.cache.take(list(writer.cache._entries))
            fresh = await store.load(list(remembered))
            for cid, (token, stored) in remembered.items():
                assert fresh.read_tokens[cid] == token, cid
                assert comparable(stored) == comparable(fresh.stored[cid]), cid
                checked += 1
            for token in {t for t, _ in remembered.values()}:
                writer.cache.keep(token, {c: s for c, (t, s) in remembered.items() if t == token})

        try:
            await drive(writer, unique, check)
        finally:
            await store.close()
        return writer.cache, checked

    cache, checked = asyncio.run(work())
    assert checked > 1000 and cache.hits > 1000 and cache.stale == 0


def test_a_processor_that_remembers_writes_and_publishes_what_one_that_reads_everything_does(store_of, unique):
    async def run(prefix: str, remember: int):
        store = store_of(prefix)
        writer = BatchWriter(CONFIG, store, remember=remember)
        try:
            published = await drive(writer, unique)
            return published, await dump(store), writer.cache
        finally:
            await store.close()

    async def work():
        return await run(f"a{unique}", 10_000), await run(f"b{unique}", 0)

    (remembering, stored_a, cache), (reading, stored_b, no_cache) = asyncio.run(work())
    assert cache.hits > 1000 and no_cache.hits == 0 and len(no_cache) == 0
    assert remembering == reading
    assert stored_a == stored_b


def test_a_customer_another_worker_wrote_since_is_read_afresh(store_of, unique):
    """A rebalance overlap: worker B writes a customer worker A remembers; A's next batch reads
    it whole (stale) and its result includes B's events, as the core's over all events."""
    cid = f"{unique}-c"
    now = DAY0 + 10 * MINUTE

    def like(n: int) -> Incoming:
        return Incoming(f'{{"event_id": "{unique}-{n}", "customer_id": "{cid}", "type": "like", '
                        f'"ts": {now - 60 + n}}}'.encode(), None, "events", 0, n, now)

    async def work():
        store_a, store_b = store_of(unique), store_of(unique)
        a, b = BatchWriter(CONFIG, store_a), BatchWriter(CONFIG, store_b)
        try:
            await a.write([like(1)], now)
            await b.write([like(2), like(3)], now)
            processed = await a.write([like(4)], now)
            return a.cache, processed, (await store_a.load([cid])).stored[cid]
        finally:
            await store_a.close()
            await store_b.close()

    cache, processed, stored = asyncio.run(work())
    reference = Scorer(CONFIG)
    reference.process_batch([like(n).value for n in (1, 2, 3, 4)], now)
    assert cache.stale == 1 and cache.hits == 0
    assert processed.cards == [score_card(reference.customers[cid], now, CONFIG, detail=False)]
    assert stored.state.buckets == reference.customers[cid].buckets


def test_the_cache_keeps_the_most_recently_written_customers_up_to_its_capacity():
    cache = StateCache(2)
    a, b, c = object(), object(), object()
    cache.keep("1", {"a": a, "b": b})           # type: ignore[dict-item]
    cache.keep("2", {"c": c, "a": a})           # type: ignore[dict-item]
    assert len(cache) == 2
    assert cache.take(["a", "b", "c"]) == {"c": ("2", c), "a": ("2", a)}
    assert len(cache) == 0                      # taken out until written again
    StateCache(0).keep("1", {"a": a})           # type: ignore[dict-item]
    assert len(StateCache(0)) == 0
