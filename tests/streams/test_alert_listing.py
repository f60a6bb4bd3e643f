"""`GET /alerts`'s listing reads the shards' alert indexes a page at a time and still answers newest
first across them, exactly: many alerts, small pages, an in-memory Redis."""

from __future__ import annotations

import asyncio
import random

import orjson

from streams.state import alert_work
from streams.state.layout import SHARDS, Keys
from streams.state.store import RedisStore
from tests.streams.memory_redis import MemoryRedis


def test_the_listing_is_newest_first_across_the_shards_page_by_page(monkeypatch):
    monkeypatch.setattr(alert_work, "PAGE", 3)
    store = RedisStore(MemoryRedis(), Keys("w"))
    rng = random.Random(5)
    recorded = {}

    async def fill() -> None:
        for n in range(120):
            cid = f"c{rng.randrange(40)}"
            shard, at, alert_id = store.keys.shard_of(cid), rng.randrange(1_000_000), f"a{n}"
            value = orjson.dumps({"id": alert_id, "rule": "inactive", "customer_id": cid,
                                  "traits": {"owner": "ana" if n % 3 else "bob"}})
            await store.redis.hset(store.keys.alert(shard, alert_id), mapping={
                "v": value, "t": str(at), "c": cid, "r": "inactive", "s": ""})
            await store.redis.zadd(store.keys.shared(shard, "alerts"), {alert_id: at})
            recorded[alert_id] = (at, n % 3 != 0)

    asyncio.run(fill())
    newest = sorted(recorded, key=lambda a: (-recorded[a][0], a))
    assert len({store.keys.shard_of(f"c{i}") for i in range(40)}) > SHARDS // 2      # spread over the shards
    whole = asyncio.run(alert_work.listing(store, 0, 1000, {}))
    assert [a["id"] for a in whole["alerts"]] == newest and whole["more"] is False
    first = asyncio.run(alert_work.listing(store, 0, 10, {}))
    assert [a["id"] for a in first["alerts"]] == newest[:10] and first["more"] is True
    exactly = asyncio.run(alert_work.listing(store, 0, len(newest), {}))   # a limit that takes them all
    assert len(exactly["alerts"]) == len(newest) and exactly["more"] is False
    bobs = [a for a in newest if not recorded[a][1]]
    assert asyncio.run(alert_work.listing(store, 0, len(bobs), {"owner": "bob"}))["more"] is False
    assert asyncio.run(alert_work.listing(store, 0, len(bobs) - 1, {"owner": "bob"}))["more"] is True
    ana = asyncio.run(alert_work.listing(store, 0, 7, {"owner": "ana"}))
    assert [a["id"] for a in ana["alerts"]] == [a for a in newest if recorded[a][1]][:7]
    assert all(a["state"] == "resolved" for a in ana["alerts"])          # no standing: no condition active
