"""The Redis state (native structures, deltas, shards) against the pure core, on a real Redis.

Batches go through the worker's own BatchWriter into Redis; every read the API serves
(customers, accounts, leaderboards, at-risk, KPIs) must equal the reference Scorer fed the
same batches, exactly, including after time passes and the due sweep re-scores customers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import orjson
import pytest

from scoring import standing as ranking
from scoring.business import business_kpis
from scoring.config import load_config
from scoring.explain import explain
from scoring.engine import Scorer
from scoring.messages import unpack
from scoring.segment_kpis import kpi_segments, segment_states
from scoring.standing import standing
from devstack.traffic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, HOUR
from streams.serve import api
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from streams.worker.replay import delete_prefix
from streams.state.store import LayoutError, RedisStore

pytestmark = pytest.mark.services
# two of the generator's three segments with KPIs of their own (mid_market: in neither)
CONFIG = load_config(overrides={"alerts": {"inactivity": "2d"}, "kpis": {"segments": ["smb", "enterprise"]}})
START = 20_700 * DAY


def traffic(unique: str, count: int = 1500):
    generator = TrafficGenerator(TrafficSettings(customers=60, accounts=8, seed=7, prefix=unique,
                                                 malformed_share=0.01, late_share=0.02, duplicate_share=0.03))
    return list(generator.messages(count, START, 5 * DAY))


def same_json(value) -> object:
    return json.loads(orjson.dumps(value))


async def compare(store: RedisStore, reference: Scorer, as_of: int) -> None:
    for cid in reference.customers:
        body = await api.customer(store, CONFIG, cid, as_of)
        body.pop("alerts_active")
        assert body.pop("why") == same_json(explain(reference.customers[cid], as_of, CONFIG).to_dict()), cid
        assert body == same_json(reference.customer(cid, as_of).to_dict()), cid
    for aid in {s.account_id for s in reference.customers.values() if s.account_id}:
        assert await api.account(store, CONFIG, aid, as_of) == same_json(reference.account(aid, as_of).to_dict())
    for order in ("top", "bottom"):
        board = await api.leaderboard(store, CONFIG, order, 15, as_of)
        expected = reference.leaderboard(as_of, limit=15, bottom=order == "bottom")
        assert [c["customer_id"] for c in board["customers"]] == [c.customer_id for c in expected]
    fresh = [standing(s, reference.alert_states.get(c, {}), as_of, CONFIG) for c, s in reference.customers.items()]
    rows, total = ranking.at_risk(fresh, 50)
    risky = await api.at_risk(store, CONFIG, 50, as_of)
    assert [r["customer_id"] for r in risky["customers"]] == [s.customer_id for s in rows]
    assert risky["total"] == total
    assert await api.kpis(store, CONFIG, as_of) == same_json(reference.kpis(as_of).to_dict())
    for segment in kpi_segments(CONFIG):
        states = segment_states(reference.customers.values(), segment, CONFIG)
        assert await api.kpis(store, CONFIG, as_of, segment) == same_json(
            {"segment": segment, **business_kpis(states, as_of, CONFIG).to_dict()}), segment


@pytest.fixture(params=["single", "cluster"])
def open_store(request, unique):
    """Opens a store (inside the test's own event loop) on a single Redis or the local Redis Cluster."""
    if request.param == "cluster":
        url, cluster = request.getfixturevalue("redis_cluster").redis_cluster_url, True
    else:
        url, cluster = request.getfixturevalue("stack").redis_url, False
    opened: list[RedisStore] = []

    def make() -> RedisStore:
        opened.append(RedisStore.from_url(url, unique, cluster=cluster))
        return opened[-1]

    yield make

    async def clean() -> None:
        store = RedisStore.from_url(url, unique, cluster=cluster)
        await delete_prefix(store)
        await store.close()

    asyncio.run(clean())


def test_batches_and_due_rescores_equal_the_core(open_store, unique):
    asyncio.run(batches_and_sweeps_equal_the_core(open_store(), traffic(unique)))


def test_customers_moving_between_segments_leave_each_segments_kpis_exact(open_store, unique):
    """Every fifth event names another segment: a customer's counters, standing and activity move
    with it, out of a segment with KPIs of its own, into another or into none."""
    moved = []
    for i, message in enumerate(traffic(unique)):
        try:
            event = json.loads(message.value)
        except ValueError:
            event = None
        if isinstance(event, dict) and i % 5 == 0:
            event["segment"] = ("smb", "enterprise", "mid_market")[i % 3]
            message = dataclasses.replace(message, value=json.dumps(event).encode())
        moved.append(message)
    asyncio.run(batches_and_sweeps_equal_the_core(open_store(), moved))


async def batches_and_sweeps_equal_the_core(store: RedisStore, messages: list) -> None:
    """Batches through the worker's writer, then time passing with due re-scores: every read equals the core's."""
    await store.check_layout()
    writer = BatchWriter(CONFIG, store)
    reference = Scorer(CONFIG)
    now = START + 5 * DAY
    for start in range(0, len(messages), 100):
        chunk = messages[start:start + 100]
        batch = [Incoming(m.value, m.key, "events", 0, start + i, now) for i, m in enumerate(chunk)]
        processed = await writer.write(batch, now)
        result = reference.process_batch([m.value for m in chunk], now)
        assert [(r.outcome, r.reason) for _, r in processed.outcomes] == [
            (r.outcome, r.reason) for r in result.results]
        assert sorted(a.to_dict().__repr__() for a in processed.alerts) == sorted(
            a.to_dict().__repr__() for a in result.alerts)
        now += HOUR // 10
    await compare(store, reference, now)
    # time passes: buckets leave windows, deadlines pass; only due customers are re-scored
    for gap in (2 * DAY, 2 * DAY, 2 * DAY, 70 * DAY):     # the last: everyone dormant, history evicted (61 d)
        now += gap
        due = {c for c, s in reference.customers.items()}
        fired = (await writer.sweep(now)).alerts
        expected_alerts = []
        for cid in sorted(due):
            state = reference.customers[cid]
            state.evict(now, CONFIG)
            expected_alerts += reference._alerts(state, now)
        assert sorted(repr(a.to_dict()) for a in fired) == sorted(repr(a.to_dict()) for a in expected_alerts)
        await compare(store, reference, now)
    assert await store.count("active") == 0               # trimmed past every window that counts it
    assert [await store.count("active", s) for s in kpi_segments(CONFIG)] == [0, 0]      # each segment's too
    assert await store.count("due") == 0 and await store.count("rank") == len(reference.customers)
    await store.close()


def test_a_prefix_in_the_old_layout_is_refused(open_store):
    async def run() -> None:
        store = open_store()
        await store.redis.sadd(store.keys.old_layout, "someone")
        with pytest.raises(LayoutError, match="engage replay"):
            await store.check_layout()
        await store.close()

    asyncio.run(run())


def test_a_prefix_in_format_5_is_refused_and_a_reader_leaves_it_be(open_store):
    """Format 6 keeps each customer as one string: format 5's customer hashes would be read with
    the wrong command (WRONGTYPE) in the middle of a batch, so the worker refuses the prefix."""
    async def run() -> None:
        store = open_store()
        await store.redis.hset(store.keys.meta, mapping={"format": 5, "shards": 16})
        with pytest.raises(LayoutError, match=r"format 5 .*format 7.*engage replay"):
            await store.check_layout()
        with pytest.raises(LayoutError, match="engage replay"):
            await store.check_layout(claim=False)
        assert await store.redis.hget(store.keys.meta, "format") == b"5"
        await store.close()

    asyncio.run(run())


def test_top_leaderboard_ties_are_broken_by_ascending_id_across_shards(open_store, unique):
    """Equal ES and CER at the top: the sorted sets hold the bottom order; top reads them backwards
    and must still list tied customers by ascending id, across shards."""
    async def run() -> None:
        store = open_store()
        writer = BatchWriter(CONFIG, store)
        reference = Scorer(CONFIG)
        now = START + DAY
        events = [{"event_id": f"{unique}t{i}", "customer_id": f"{unique}-{i:03d}", "type": "follow", "ts": now - HOUR,
                   "count": 3} for i in range(300)]
        events.append({"event_id": f"{unique}lead", "customer_id": f"{unique}-zzz", "type": "follow",
                       "ts": now - HOUR, "count": 9})
        values = [orjson.dumps(e) for e in events]
        await writer.write([Incoming(v, None, "events", 0, i, now) for i, v in enumerate(values)], now)
        reference.process_batch(values, now)
        for limit in (1, 5, 17, 301):
            board = await api.leaderboard(store, CONFIG, "top", limit, now)
            assert [c["customer_id"] for c in board["customers"]] == [
                c.customer_id for c in reference.leaderboard(now, limit=limit)]
        await store.close()

    asyncio.run(run())


def test_the_median_selected_across_shards_is_statistics_median(open_store):
    """Spread scores, a mass at 0, heavy ties and subnormal floats: the selection over the rank
    sets (a few rounds of ZLEXCOUNT, then the last few keys read) is exact."""
    import random
    import statistics

    from scoring import formulas
    from scoring.standing import Standing, bottom_key
    from streams.state.layout import Keys

    async def run() -> None:
        store = open_store()
        rng = random.Random(5)
        draws = {"spread": lambda: rng.random() * 100, "zeros": lambda: 0.0 if rng.random() < 0.7 else rng.random(),
                 "ties": lambda: rng.choice([0.0, 12.5, 12.5, 40.0, 100.0]),
                 "tiny": lambda: rng.choice([5e-324, 1e-300, 1e-5, 0.0])}
        for trial, (kind, n) in enumerate([(k, n) for k in draws for n in (1, 2, 9, 700)]):
            values = [draws[kind]() for _ in range(n)]
            async with store.redis.pipeline(transaction=False) as pipe:
                for shard in range(16):
                    pipe.delete(store.keys.shared(shard, "rank"))
                for i, value in enumerate(values):
                    cid = f"c{trial}-{i}"
                    key = bottom_key(Standing(cid, value, 0.0, formulas.Tier.LOW, False, None, True, None, (), {}))
                    pipe.zadd(store.keys.shared(Keys.shard_of(cid), "rank"), {key: 0})
                await pipe.execute()
            assert await store.median_es(n) == statistics.median(values), (kind, n)
        await store.close()

    asyncio.run(run())


def test_one_customers_thousands_of_events_in_one_batch_are_one_write(open_store, unique):
    """More event ids, sessions and buckets in one write than a Lua call may unpack as one command's
    arguments (a batch of batch messages from one busy customer): written in chunks, still exact."""
    events = [{"event_id": f"{unique}-{i}", "customer_id": f"{unique}-hot", "type": "session_start",
               "session_id": f"s{i}", "ts": START + i * 10_000} for i in range(5000)]
    now = START + 5000 * 10_000

    async def run() -> None:
        store = open_store()
        message = orjson.dumps(events)
        await BatchWriter(CONFIG, store).write([Incoming(message, None, "events", 0, 0, now)], now)
        reference = Scorer(CONFIG)
        reference.process_batch([item.event for item in unpack(message, CONFIG)], now)
        await compare(store, reference, now)
        assert await store.redis.zcard(store.keys.seen(f"{unique}-hot")) == len(
            reference.customers[f"{unique}-hot"].seen) > 4000          # one ZADD would be 8,000+ arguments
        await store.close()

    asyncio.run(run())


def test_standings_of_more_customers_than_one_read_call_takes_are_all_read(open_store, unique):
    """On one Redis the standings are read in calls of READ_GROUP customers whatever their shards,
    on a cluster one call per shard: either way every stored customer is read once, none invented."""
    from streams.state.store import READ_GROUP

    async def run() -> None:
        store = open_store()
        now = START + DAY
        count = 2 * READ_GROUP + 7
        values = [orjson.dumps({"event_id": f"{unique}g{i}", "customer_id": f"{unique}-g{i}", "type": "follow",
                                "ts": now - HOUR, "count": 1 + i % 5}) for i in range(count)]
        await BatchWriter(CONFIG, store).write([Incoming(v, None, "events", 0, i, now)
                                                     for i, v in enumerate(values)], now)
        ids = [f"{unique}-g{i}" for i in range(count)] + [f"{unique}-g{i}" for i in range(5)] + [f"{unique}-nobody"]
        together = await store.standings(ids)
        assert sorted(together) == sorted(ids[:count])
        for cid in ids[:count:37]:
            assert together[cid] == (await store.standings([cid]))[cid]
        await store.close()

    asyncio.run(run())


def test_top_leaderboard_of_spread_scores_and_small_tie_groups_equals_the_core(open_store, unique):
    """Spread scores (a shard's last group read is then below the answer's and is not completed)
    mixed with tie groups of 2-9 across shards (it is): every limit equals the core's order."""
    import random

    async def run() -> None:
        store = open_store()
        writer = BatchWriter(CONFIG, store)
        reference = Scorer(CONFIG)
        now = START + DAY
        rng = random.Random(11)
        counts = [rng.choice([1, 2, 3, 4, 5, 6, 8, 11, 15, 19, 27, 40]) for _ in range(160)]
        values = [orjson.dumps({"event_id": f"{unique}s{i}", "customer_id": f"{unique}-s{i:03d}",
                                "type": rng.choice(["follow", "comment"]), "ts": now - HOUR, "count": count})
                  for i, count in enumerate(counts)]
        await writer.write([Incoming(v, None, "events", 0, i, now) for i, v in enumerate(values)], now)
        reference.process_batch(values, now)
        for limit in (*range(1, 26), 60, 161):
            board = await api.leaderboard(store, CONFIG, "top", limit, now)
            assert [c["customer_id"] for c in board["customers"]] == [
                c.customer_id for c in reference.leaderboard(now, limit=limit)], limit
        await store.close()

    asyncio.run(run())
