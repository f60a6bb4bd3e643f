"""What each part of the edge needs from the state store, as typed Protocols.

The batch writer, the publisher and the read API each depend on the few store calls
they make, not on `RedisStore` and its Redis client: that is their whole contract with
the state, and any object with these methods (the Redis store on a single Redis or a
Cluster, over a real Redis or the in-memory one of the fast tests) serves them.
`RedisStore` implements all three; `tests/streams/test_ports.py` checks it, signature by
signature.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from scoring.business import Aggregates
from scoring.config import Config
from scoring.deltas import CustomerDelta, Stored
from scoring.standing import Standing
from streams.state.outbox import Output


@dataclass
class Loaded:
    """Customers as read for a batch: their stored state and the write token each was read at."""

    stored: dict[str, Stored]
    read_tokens: dict[str, str]                           # customer -> write token read ("0": none)
    stale: list[str] = field(default_factory=list)        # remembered, but written by another since


@runtime_checkable
class BatchStore(Protocol):
    """A batch and the due sweep: read customers, write a shard's changes atomically."""

    async def load(self, customer_ids: Iterable[str], event_ids: Mapping[str, list[str]] | None = None,
                   remembered: Mapping[str, tuple[str, Stored]] | None = None) -> Loaded: ...

    def new_token(self) -> str: ...

    async def write_shards(self, deltas: Mapping[int, Iterable[CustomerDelta]], read_tokens: Mapping[str, str],
                           outputs: Mapping[int, Iterable[Output]] | None = None,
                           claimable_at_ms: int = 0, token: str | None = None, confirm: bool = True) -> set[int]: ...

    async def confirm(self, shards: Iterable[int]) -> None: ...

    async def due(self, shard: int, now_ms: int, limit: int) -> list[str]: ...

    async def forget_due(self, shard: int, customer_ids: list[str]) -> None: ...

    async def trim_activity(self, shard: int, before_ms: int, features: Iterable[str],
                            segments: Iterable[str] = ()) -> None: ...

    async def drop_old_totals(self, shard: int, oldest_bucket: int, segments: Iterable[str] = ()) -> int: ...

    async def pop_touched_accounts(self, shard: int, limit: int) -> list[str]: ...

    async def account_members(self, account_ids: list[str]) -> dict[str, list[str]]: ...

    async def standings(self, customer_ids: list[str]) -> dict[str, Standing]: ...

    async def account_snapshots(self, account_ids: list[str]) -> dict[str, tuple[str, bytes | None]]: ...

    async def write_account(self, account_id: str, read_token: str, snapshot: bytes, outputs: Iterable[Output],
                            claimable_at_ms: int, token: str) -> tuple[int, bool]: ...


@runtime_checkable
class OutboxStore(Protocol):
    """Publishing: outputs out of the outbox once Kafka acknowledged them, and their redrive."""

    async def claim_outputs(self, shard: int, now_ms: int, lease_until_ms: int, limit: int) -> list[Output]: ...

    async def acknowledge_outputs(self, outputs: Iterable[tuple[int, Output]]) -> int: ...

    async def push_recent_alerts(self, alerts: list[bytes], keep: int = 100) -> None: ...


@runtime_checkable
class ReadStore(Protocol):
    """The read API: customers, accounts, the sorted sets and the KPIs' aggregates."""

    async def load(self, customer_ids: Iterable[str], event_ids: Mapping[str, list[str]] | None = None,
                   remembered: Mapping[str, tuple[str, Stored]] | None = None) -> Loaded: ...

    async def account_members(self, account_ids: list[str]) -> dict[str, list[str]]: ...

    async def standings(self, customer_ids: list[str]) -> dict[str, Standing]: ...

    async def ranked(self, order: str, limit: int, segment: str | None = None) -> list[str]: ...

    def every_ranked(self, segment: str | None = None, page: int = 500) -> AsyncIterator[list[str]]: ...

    async def count(self, name: str, segment: str | None = None) -> int: ...

    async def aggregates(self, as_of_ms: int, config: Config, segment: str | None = None) -> Aggregates: ...

    async def recent_alerts(self, limit: int) -> list[dict[str, object]]: ...

    async def kpi_trend(self, segment: str | None = None) -> dict[int, dict[str, object]]: ...

    async def unreachable(self) -> str | None: ...
