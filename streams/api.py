"""HTTP API handlers: JSON computed by the pure core from the shared Redis state.

Every read takes an optional `as_of` (epoch ms; default now) so a score can be asked for
at a fixed instant and compared exactly. Errors are JSON too: unknown id -> 404, bad
parameter -> 400 with a message. The handlers are plain async functions; the Faust web
views in :mod:`streams.app` only route to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from scoring.business import business_kpis
from scoring.config import Config
from scoring.scores import account_card, score_card
from scoring.timeutil import MAX_EPOCH_MS
from streams.store import RedisStore

MAX_LIMIT = 1000
MAX_ID_LENGTH = 256


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_as_of(query: Mapping[str, str], now_ms: int) -> int:
    raw = query.get("as_of")
    if raw is None or raw == "":
        return now_ms
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16 or int(raw) > MAX_EPOCH_MS:
        raise ApiError(400, "as_of must be epoch milliseconds (a non-negative integer)")
    return int(raw)


def parse_limit(query: Mapping[str, str], default: int = 10) -> int:
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer 1..{MAX_LIMIT}")
    return int(raw)


def check_id(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable() or "{" in value or "}" in value:
        raise ApiError(400, f"{what} must be 1..{MAX_ID_LENGTH} printable characters without braces")
    return value


async def customer(store: RedisStore, config: Config, customer_id: str, as_of_ms: int) -> dict[str, Any]:
    record = await store.record(check_id(customer_id, "customer id"))
    if record is None:
        raise ApiError(404, f"unknown customer {customer_id!r}")
    body = score_card(record.state, as_of_ms, config).to_dict()
    body["alerts_active"] = sorted(rule for rule, s in record.alert_states.items() if s.active)
    return body


async def account(store: RedisStore, config: Config, account_id: str, as_of_ms: int) -> dict[str, Any]:
    members = await store.account_members(check_id(account_id, "account id"))
    records = await store.records(members)
    cards = [score_card(r.state, as_of_ms, config, detail=False) for r in records.values()
             if r.state.account_id == account_id]
    if not cards:
        raise ApiError(404, f"unknown account {account_id!r}")
    return account_card(account_id, cards, as_of_ms, config).to_dict()


async def leaderboard(store: RedisStore, config: Config, order: str, limit: int, as_of_ms: int) -> dict[str, Any]:
    if order not in ("top", "bottom"):
        raise ApiError(400, "order must be 'top' or 'bottom'")
    cards = [score_card(r.state, as_of_ms, config, detail=False) async for r in store.all_records()]
    bottom = order == "bottom"
    cards.sort(key=lambda c: (c.es, c.cer, c.customer_id) if bottom else (-c.es, -c.cer, c.customer_id))
    return {
        "as_of": as_of_ms,
        "order": order,
        "customers": [_summary(c) for c in cards[:limit]],
    }


async def at_risk(store: RedisStore, config: Config, limit: int, as_of_ms: int) -> dict[str, Any]:
    """Customers with an alert condition still active, lowest engagement score first."""
    rows = []
    async for record in store.all_records():
        active = sorted(rule for rule, s in record.alert_states.items() if s.active)
        if active:
            card = score_card(record.state, as_of_ms, config, detail=False)
            rows.append({**_summary(card), "alerts": active})
    rows.sort(key=lambda row: (row["es"], row["customer_id"]))
    return {"as_of": as_of_ms, "customers": rows[:limit], "total": len(rows)}


async def kpis(store: RedisStore, config: Config, as_of_ms: int) -> dict[str, Any]:
    states = [record.state async for record in store.all_records()]
    # a full pass over every customer (seconds at 100 k): in a thread, so the event loop keeps
    # switching back to the scoring agent every few ms instead of stalling for the whole pass
    return (await asyncio.to_thread(business_kpis, states, as_of_ms, config)).to_dict()


def _summary(card: Any) -> dict[str, Any]:
    return {
        "customer_id": card.customer_id,
        "account_id": card.account_id,
        "es": round(card.es, 6),
        "tier": card.tier.value,
        "cer": card.cer,
        "active": card.active,
    }
