"""GET /customers.csv: every stored standing with its traits, in the bottom order, filtered, streamed.

Fast tier: the store is the in-memory Redis, written by the worker's BatchWriter; every row is
checked against the pure core's score card of that customer.
"""

from __future__ import annotations

import asyncio
import csv
import io

import orjson
import pytest

from scoring.config import load_config
from scoring.engine import Scorer
from streams.clock import now_ms
from streams.serve import api, customers_csv
from streams.serve.api_server import create_api
from streams.settings import load_settings
from streams.state.layout import Keys
from streams.state.store import RedisStore
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from tests.builders import ev
from tests.streams.memory_redis import MemoryRedis

CONFIG = load_config(overrides={"kpis": {"segments": ["smb", "enterprise"]}})
SETTINGS = load_settings(env={"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENGAGE_REDIS_URL": "redis://127.0.0.1:1/0",
                              "ENGAGE_API_TOKEN": "read-token-0123456789"})
HOUR = 3_600_000
TYPES = ("like", "comment", "share", "purchase", "page_view")


def population(customers: int = 90) -> list[dict]:
    """Customers of spread scores, segments, accounts and traits (one with a formula-like owner)."""
    at = now_ms() - 2 * HOUR
    events = []
    for i in range(customers):
        cid = f"c{i:03d}"
        fields = {"segment": ("smb", "enterprise", "other")[i % 3], **({"account_id": f"a{i % 7}"} if i % 2 else {})}
        events.append(ev(cid, TYPES[i % len(TYPES)], at, count=1 + (i * 7) % 30 + (600 if i % 5 == 0 else 0), **fields))
        if i % 4 == 0:
            events.append(ev(cid, "traits", at, traits={"plan": "growth", "arr": 1000 + i, "renewal_date": "2027-04-01",
                                                        "owner": "=HYPERLINK(\"x\")" if i == 8 else f"o{i % 5}"}))
    events.append(ev("joiner", "member_joined", at - 20 * 86_400_000))      # never active: alerts
    return events


def written(events: list[dict]) -> tuple[RedisStore, Scorer, int]:
    now = now_ms()
    store = RedisStore(MemoryRedis(), Keys("csv"))
    raws = [orjson.dumps(e) for e in events]
    asyncio.run(BatchWriter(CONFIG, store).write([Incoming(raw, None, "events", 0, i, now)
                                                  for i, raw in enumerate(raws)], now))
    reference = Scorer(CONFIG)
    reference.process_batch(raws, now)
    return store, reference, now


async def exported(store: RedisStore, query: dict[str, str] | None = None) -> list[dict[str, str]]:
    answer = await api.customers_export(store, CONFIG, query or {})
    text = b"".join([chunk async for chunk in answer.chunks]).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_every_customer_is_one_row_in_the_bottom_order_with_the_cores_values_and_traits(monkeypatch):
    monkeypatch.setattr(customers_csv, "PAGE", 7)       # many pages, merged across the 16 shards
    store, reference, now = written(population())
    rows = asyncio.run(exported(store))
    everyone = sorted(reference.customers)
    assert sorted(r["customer_id"] for r in rows) == everyone and len(rows) == len(everyone)
    cards = {cid: reference.customer(cid, now) for cid in everyone}
    assert [r["customer_id"] for r in rows] == sorted(everyone, key=lambda c: (cards[c].es, cards[c].cer, c))
    assert list(rows[0]) == [*customers_csv.COLUMNS, *(f"traits.{n}" for n in sorted(CONFIG.traits))]
    for r in rows:
        cid = r["customer_id"]
        card = reference.customer(cid, now)
        assert (float(r["es"]), float(r["cer"]), r["tier"], r["active"]) == \
            (round(card.es, 6), card.cer, card.tier.value, "true" if card.active else "false")
        assert r["account_id"] == (card.account_id or "")
        assert r["segment"] == (card.segment if card.segment in ("smb", "enterprise") else "")
        assert r["alerts"] == ";".join(sorted(rule for rule, s in reference.alert_states[cid].items() if s.active))
        shown = {k: str(v) for k, v in card.traits.items()}
        assert {k[len("traits."):]: v for k, v in r.items() if k.startswith("traits.") and v} == \
            {k: ("'" + v if v.startswith("=") else v) for k, v in shown.items()}
    assert next(r for r in rows if r["customer_id"] == "c008")["traits.owner"] == "'=HYPERLINK(\"x\")"
    assert next(r for r in rows if r["customer_id"] == "joiner")["alerts"] == "inactive;not_activated"


def test_the_filters_select_by_segment_tier_and_benchmark_and_a_bad_one_is_a_400():
    store, reference, now = written(population())
    rows = asyncio.run(exported(store))
    smb = asyncio.run(exported(store, {"segment": "smb"}))
    assert [r["customer_id"] for r in smb] == [r["customer_id"] for r in rows if r["segment"] == "smb"]
    assert smb and all(reference.customer(r["customer_id"], now).segment == "smb" for r in smb)
    for tier in ("low", "moderate", "excellent"):
        assert [r["customer_id"] for r in asyncio.run(exported(store, {"tier": tier}))] == \
            [r["customer_id"] for r in rows if r["tier"] == tier]
    below = asyncio.run(exported(store, {"below_benchmark": "true"}))
    above = asyncio.run(exported(store, {"below_benchmark": "false"}))
    benchmark = CONFIG.scoring.benchmark_cer
    assert below and above and len(below) + len(above) == len(rows)
    assert all(float(r["cer"]) < benchmark for r in below)
    assert all(float(r["cer"]) >= benchmark or not reference.customer(r["customer_id"], now).active for r in above)
    both = asyncio.run(exported(store, {"segment": "enterprise", "tier": "low", "below_benchmark": "true"}))
    assert [r["customer_id"] for r in both] == [r["customer_id"] for r in below
                                               if r["segment"] == "enterprise" and r["tier"] == "low"]
    for query, message in (({"segment": "other"}, "kpis.segments"), ({"tier": "gold"}, "tier must be one of"),
                           ({"below_benchmark": "yes"}, "true or false")):
        with pytest.raises(api.ApiError) as info:
            asyncio.run(exported(store, query))
        assert info.value.status == 400 and message in info.value.message


def test_a_customer_whose_score_rises_during_the_export_is_listed_once():
    store, reference, now = written(population(200))

    async def run() -> list[str]:
        walk = store.every_ranked(None, 3)
        first = await anext(walk)
        # the lowest customers score higher now: their keys move ahead of where the walk is
        raws = [orjson.dumps(ev(cid, "share", now - HOUR, count=200)) for cid in first]
        await BatchWriter(CONFIG, store).write([Incoming(raw, None, "events", 0, 1000 + i, now)
                                                for i, raw in enumerate(raws)], now)
        return [*first, *[cid async for page in walk for cid in page]]

    listed = asyncio.run(run())
    assert len(listed) == len(set(listed)) == len(reference.customers)


def test_engage_api_streams_it_as_csv_behind_the_read_token():
    from aiohttp.test_utils import TestClient, TestServer

    store, reference, _ = written(population(30))

    async def run() -> None:
        async with TestClient(TestServer(create_api(SETTINGS, CONFIG, store))) as client:
            assert (await client.get("/customers.csv")).status == 401
            auth = {"Authorization": "Bearer read-token-0123456789"}
            response = await client.get("/customers.csv", headers=auth)
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
            assert response.headers["Content-Disposition"] == 'attachment; filename="customers.csv"'
            rows = list(csv.DictReader(io.StringIO(await response.text())))
            assert sorted(r["customer_id"] for r in rows) == sorted(reference.customers)
            response = await client.get("/customers.csv?tier=gold", headers=auth)
            assert response.status == 400 and (await response.json())["error"].startswith("tier must be one of")

    asyncio.run(run())


def test_a_redis_failure_part_way_cuts_the_answer_short_instead_of_ending_it_cleanly(monkeypatch):
    """The rows already sent cannot be taken back: the body ends without its last chunk, which an
    HTTP client reports as an incomplete answer, not a shorter file."""
    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer

    monkeypatch.setattr(customers_csv, "PAGE", 5)
    store, _, _ = written(population(60))
    standings, reads = store.standings, []

    async def failing(ids):  # type: ignore[no-untyped-def]
        reads.append(ids)
        if len(reads) == 3:
            raise ConnectionError("Redis went away")
        return await standings(ids)

    store.standings = failing  # type: ignore[method-assign]

    async def run() -> None:
        async with TestClient(TestServer(create_api(SETTINGS, CONFIG, store))) as client:
            response = await client.get("/customers.csv", headers={"Authorization": "Bearer read-token-0123456789"})
            assert response.status == 200                 # the header went before the failure
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()

    asyncio.run(run())
    assert len(reads) == 3
