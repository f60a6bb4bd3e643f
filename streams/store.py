"""Redis state: customer records and the global indexes, read and written per batch.

Key layout (`<p>` is the configured prefix, default `eng`; braces are Redis Cluster hash
tags, so everything of one customer lives in one slot):

    <p>:{<customer_id>}:c      STRING  the customer record: core state + alert memory (JSON)
    <p>:{g}:customers          SET     ids of every customer with a record
    <p>:{g}:acct:<account_id>  SET     the account's customers (by their newest account_id)
    <p>:{g}:kpis               STRING  the latest business-KPI snapshot (JSON, with as_of)
    <p>:{g}:kpis:lock          STRING  which worker refreshes the KPI snapshot (short TTL)
    <p>:{g}:alerts:recent      LIST    the last 100 alerts (JSON), newest first

A batch is one optimistic transaction: WATCH the batch's customer keys, read them,
compute with the pure core, then MULTI/EXEC the new records and index changes. Either
all of a batch's effects land (with the event ids that make redeliveries duplicates)
or none do; if another worker touched one of the customers meanwhile (a rebalance
overlap), the batch is recomputed from the fresh state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from streams.codec import CustomerRecord, decode_record, encode_record

if TYPE_CHECKING:
    from streams.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Keys:
    prefix: str = "eng"

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}:{{{customer_id}}}:c"

    def account(self, account_id: str) -> str:
        return f"{self.prefix}:{{g}}:acct:{account_id}"

    @property
    def customers(self) -> str:
        return f"{self.prefix}:{{g}}:customers"

    @property
    def kpis(self) -> str:
        return f"{self.prefix}:{{g}}:kpis"

    @property
    def kpis_lock(self) -> str:
        return f"{self.prefix}:{{g}}:kpis:lock"

    @property
    def recent_alerts(self) -> str:
        return f"{self.prefix}:{{g}}:alerts:recent"


@dataclass
class Changes(Generic[T]):
    """What a batch computed: records to write, and a result for the caller."""

    records: dict[str, CustomerRecord] = field(default_factory=dict)
    result: T | None = None


class RedisStore:
    def __init__(self, client: aioredis.Redis, keys: Keys | None = None) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.conflicts = 0  # optimistic transactions retried because another writer won

    @classmethod
    def from_url(cls, url: str, prefix: str = "eng", **options: Any) -> RedisStore:
        """`options`: redis-py's (username, password, ssl_ca_certs ...); the URL's own win."""
        return cls(aioredis.Redis.from_url(url, **options), Keys(prefix))

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """The store of `settings`: its URL, key prefix, ACL user and TLS CA."""
        from streams.security import redis_options

        return cls.from_url(settings.redis_url, settings.key_prefix, **redis_options(settings))

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def transact(
        self, customer_ids: Iterable[str], compute: Callable[[dict[str, CustomerRecord]], Changes[T]]
    ) -> T | None:
        """Run `compute` over the current records of `customer_ids` and store its changes atomically."""
        ids = list(dict.fromkeys(customer_ids))
        keys = [self.keys.customer(c) for c in ids]
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    if keys:
                        await pipe.watch(*keys)
                        raws = await pipe.mget(keys)
                    else:
                        raws = []
                    current = {cid: decode_record(cid, raw) for cid, raw in zip(ids, raws) if raw is not None}
                    before = {cid: record.state.account_id for cid, record in current.items()}
                    changes = compute(current)
                    if not changes.records:
                        return changes.result  # leaving the block UNWATCHes
                    pipe.multi()
                    new_ids = []
                    for cid, record in changes.records.items():
                        pipe.set(self.keys.customer(cid), encode_record(record))
                        if cid not in current:
                            new_ids.append(cid)
                        old_account, new_account = before.get(cid), record.state.account_id
                        if old_account != new_account:
                            if old_account:
                                pipe.srem(self.keys.account(old_account), cid)
                            if new_account:
                                pipe.sadd(self.keys.account(new_account), cid)
                    if new_ids:
                        pipe.sadd(self.keys.customers, *new_ids)
                    await pipe.execute()
                    return changes.result
                except WatchError:
                    self.conflicts += 1
                    continue

    async def record(self, customer_id: str) -> CustomerRecord | None:
        raw = await self.redis.get(self.keys.customer(customer_id))
        return None if raw is None else decode_record(customer_id, raw)

    async def records(self, customer_ids: Iterable[str]) -> dict[str, CustomerRecord]:
        ids = list(customer_ids)
        out: dict[str, CustomerRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            raws = await self.redis.mget([self.keys.customer(c) for c in chunk])
            out.update({cid: decode_record(cid, raw) for cid, raw in zip(chunk, raws) if raw is not None})
        return out

    async def customer_ids(self) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(self.keys.customers))

    async def account_members(self, account_id: str) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(self.keys.account(account_id)))

    async def all_records(self) -> AsyncIterator[CustomerRecord]:
        """Every customer record, in chunks (a full read: for KPI refresh, sweeps and checks)."""
        ids = await self.customer_ids()
        for start in range(0, len(ids), 500):
            for record in (await self.records(ids[start : start + 500])).values():
                yield record

    async def save_kpis(self, snapshot: dict[str, object]) -> None:
        await self.redis.set(self.keys.kpis, orjson.dumps(snapshot))

    async def kpis(self) -> dict[str, object] | None:
        raw = await self.redis.get(self.keys.kpis)
        return None if raw is None else orjson.loads(raw)

    async def push_recent_alerts(self, alerts: list[bytes], keep: int = 100) -> None:
        """Newest first, capped: what the live page shows (the alerts topic has them all)."""
        if alerts:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(self.keys.recent_alerts, *alerts)
                pipe.ltrim(self.keys.recent_alerts, 0, keep - 1)
                await pipe.execute()

    async def recent_alerts(self, limit: int) -> list[dict[str, object]]:
        return [orjson.loads(raw) for raw in await self.redis.lrange(self.keys.recent_alerts, 0, limit - 1)]

    async def claim_kpi_refresh(self, worker_id: str, ttl_ms: int) -> bool:
        """True for the one worker that refreshes the shared KPI snapshot this round."""
        if await self.redis.set(self.keys.kpis_lock, worker_id, nx=True, px=ttl_ms):
            return True
        holder = await self.redis.get(self.keys.kpis_lock)
        if holder is not None and holder.decode() == worker_id:
            await self.redis.pexpire(self.keys.kpis_lock, ttl_ms)
            return True
        return False
