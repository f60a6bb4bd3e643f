"""`/kpis` for now is computed at most once per ENGAGE_KPI_INTERVAL_S, whoever asks.

On the real Redis (the window sums are a Lua script): the shared answer equals the core's KPIs at the
instant it names, concurrent requests wait for one computation, a later request within the
interval gets the same answer, and `/kpis?as_of=` is always computed afresh.
"""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from scoring.engine import Scorer
from streams import api
from streams.processor import BatchProcessor, Incoming
from streams.store import RedisStore
from tests.builders import CONFIG
from tests.streams.support import now_ms

pytestmark = pytest.mark.services


def events(unique: str, now: int, first: int, count: int) -> list[bytes]:
    return [orjson.dumps({"event_id": f"{unique}-{i}", "customer_id": f"{unique}-c{i % 5}",
                          "type": ("like", "comment", "login")[i % 3], "ts": now - 1000 * i})
            for i in range(first, first + count)]


def plain(body: dict) -> dict:
    return json.loads(orjson.dumps(body))


def test_kpis_for_now_are_shared_within_the_interval_and_exact_at_their_instant(stack, unique):
    store = RedisStore.from_url(stack.redis_url, unique)
    now = now_ms()
    reference = Scorer(CONFIG)
    computed = []
    aggregates = store.aggregates

    async def counted(as_of_ms, config):
        computed.append(as_of_ms)
        return await aggregates(as_of_ms, config)

    store.aggregates = counted

    async def write(batch: list[bytes]) -> None:
        await BatchProcessor(CONFIG, store).process([Incoming(e, None, "events", 0, i, now)
                                                     for i, e in enumerate(batch)], now)
        reference.process_batch(batch, now)

    async def scenario() -> None:
        try:
            await check()
        finally:
            await store.close()

    async def check() -> None:
        await store.check_layout()
        await write(events(unique, now, 0, 30))
        latest = api.LatestKpis(store, CONFIG, interval_s=3600)
        [kpis_route] = [r.handler for r in api.routes(store, CONFIG, latest) if r.path == "/kpis"]

        answers = await asyncio.gather(*(api.answer(kpis_route, {}, {}) for _ in range(20)))
        assert len(computed) == 1                                   # twenty requests, one computation
        first = answers[0][1]
        assert all(status == 200 and body is first for status, body in answers)
        assert plain(first) == plain(reference.kpis(first["as_of_ms"]).to_dict())
        assert first["dau"] == 5

        await write(events(unique, now, 30, 30) + [orjson.dumps(
            {"event_id": f"{unique}-new", "customer_id": f"{unique}-c-new", "type": "like", "ts": now})])
        assert await latest.get() is first and len(computed) == 1   # within the interval: the same answer
        at = now_ms()
        status, exact = await api.answer(kpis_route, {"as_of": str(at)}, {})
        assert status == 200 and len(computed) == 2                 # as_of: computed afresh, exact
        assert plain(exact) == plain(reference.kpis(at).to_dict()) and exact["dau"] == 6

        latest.interval_s = 0                                       # the interval over: recomputed
        again = await latest.get()
        assert len(computed) == 3 and again["dau"] == 6
        assert plain(again) == plain(reference.kpis(again["as_of_ms"]).to_dict())

    asyncio.run(scenario())
