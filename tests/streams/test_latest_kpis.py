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
from streams.serve import api
from streams.state.kpis import LatestKpis
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from streams.state.store import RedisStore
from tests.builders import CONFIG
from tests.streams.support import now_ms

pytestmark = pytest.mark.services


def events(unique: str, now: int, first: int, count: int) -> list[bytes]:
    return [orjson.dumps({"event_id": f"{unique}-{i}", "customer_id": f"{unique}-c{i % 5}",
                          "type": ("like", "comment", "login")[i % 3], "ts": now - 1000 * i})
            for i in range(first, first + count)]


def count_computations(store: RedisStore, calls: list, note) -> None:  # type: ignore[no-untyped-def]
    """Each KPI computation (a read of the shared aggregates) appends `note(as_of_ms)` to `calls`."""
    aggregates = store.aggregates

    async def counted(as_of_ms, config, segment=None):  # type: ignore[no-untyped-def]
        calls.append(note(as_of_ms))
        return await aggregates(as_of_ms, config, segment)

    store.aggregates = counted


def plain(body: dict) -> dict:
    return json.loads(orjson.dumps(body))


def test_kpis_for_now_are_shared_within_the_interval_and_exact_at_their_instant(stack, unique):
    store = RedisStore.from_url(stack.redis_url, unique)
    now = now_ms()
    reference = Scorer(CONFIG)
    computed = []
    count_computations(store, computed, lambda at: at)

    async def write(batch: list[bytes]) -> None:
        await BatchWriter(CONFIG, store).write([Incoming(e, None, "events", 0, i, now)
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
        latest = LatestKpis(store, CONFIG, interval_s=3600)
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


def test_a_kept_fresh_answer_is_never_computed_by_a_reader(stack, unique):
    """With `keep_fresh` running (as in every worker and `engage api`), the readers of a few
    intervals all find the answer computed, and a later write shows within an interval."""
    store = RedisStore.from_url(stack.redis_url, unique)
    now = now_ms()
    computed_by: list[asyncio.Task | None] = []
    count_computations(store, computed_by, lambda _: asyncio.current_task())

    async def scenario() -> None:
        await store.check_layout()
        writer = BatchWriter(CONFIG, store)
        batch = events(unique, now, 0, 30)
        await writer.write([Incoming(e, None, "events", 0, i, now) for i, e in enumerate(batch)], now)
        latest = LatestKpis(store, CONFIG, interval_s=0.4)
        refresher = asyncio.get_running_loop().create_task(latest.keep_fresh())
        try:
            while not computed_by:
                await asyncio.sleep(0.01)
            answers = []
            for _ in range(60):                            # 1.2 s: three intervals
                answers.append((await latest.get())["dau"])
                await asyncio.sleep(0.02)
            assert answers == [5] * 60
            assert len(computed_by) >= 4 and all(task is refresher for task in computed_by)
            extra = [orjson.dumps({"event_id": f"{unique}-new", "customer_id": f"{unique}-c-new",
                                   "type": "like", "ts": now})]
            await writer.write([Incoming(extra[0], None, "events", 0, 99, now)], now)
            deadline = asyncio.get_running_loop().time() + 0.4 + 0.5
            while (await latest.get())["dau"] != 6:
                assert asyncio.get_running_loop().time() < deadline, "the new customer never showed"
                await asyncio.sleep(0.02)
            assert all(task is refresher for task in computed_by)
        finally:
            refresher.cancel()
            await store.close()

    asyncio.run(scenario())


def test_engage_api_keeps_the_shared_kpis_fresh_from_its_start_to_its_cleanup(stack, unique):
    """The wiring: `engage api` starts `keep_fresh` with the application and stops it at cleanup."""
    from aiohttp import web

    from streams.serve.api_server import REFRESHER, create_api
    from streams.settings import load_settings

    store = RedisStore.from_url(stack.redis_url, unique)
    computed = []
    count_computations(store, computed, lambda at: at)
    settings = load_settings({"redis_url": stack.redis_url, "kafka_bootstrap": stack.kafka_bootstrap, "key_prefix": unique,
                              "kpi_interval_s": 0.2}, env={})

    async def scenario() -> None:
        await store.check_layout()
        app = create_api(settings, CONFIG, store)
        runner = web.AppRunner(app)
        await runner.setup()                                  # on_startup: no request is ever made
        try:
            deadline = asyncio.get_running_loop().time() + 5
            while len(computed) < 3:
                assert asyncio.get_running_loop().time() < deadline, f"computed {len(computed)} times in 5 s"
                await asyncio.sleep(0.02)
        finally:
            await runner.cleanup()
        await asyncio.sleep(0)
        assert app[REFRESHER].cancelled()

    asyncio.run(scenario())
