"""HTTP API handlers: JSON computed by the pure core from the shared Redis state.

Every read takes an optional `as_of` (epoch ms; default now) so a score can be asked for
at a fixed instant and compared exactly. Errors are JSON too: unknown id -> 404, bad
parameter -> 400 with a message. The handlers are plain async functions, and `routes` is
the one table of paths and methods: :mod:`streams.serve.http` makes every answer of it, a
worker and `engage api` serve those, and :mod:`streams.serve.openapi` describes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from scoring.alert_work import WorkError, WorkState, acted
from scoring.alerts import Rule
from scoring.config import Config
from scoring.deltas import Stored
from scoring.events import id_problem
from scoring.explain import explain
from scoring.formulas import Tier
from scoring.history import account_history, customer_history
from scoring.scores import account_card, account_summary, account_weights, score_card
from scoring.standing import Standing, ranked_segments
from scoring.state import CustomerState
from scoring.timeutil import MAX_EPOCH_MS
from scoring.windows import bucket_of, window_start_bucket
from streams.clock import now_ms
from streams.serve import customers_csv
from streams.state import alert_work
from streams.state.kpis import LatestKpis, kpis
from streams.state.ports import ReadStore

MAX_LIMIT = 1000
MAX_BATCH_IDS = 1000
log = logging.getLogger("engage.api")

Handler = Callable[[Mapping[str, str], Mapping[str, str], bytes], Awaitable[Any]]   # (query, path params, body)


@dataclass(frozen=True)
class Route:
    method: str          # GET or POST
    path: str            # aiohttp's pattern syntax
    handler: Handler
    write: bool = False  # changes state: needs the write token (ENGAGE_API_WRITE_TOKEN), not the read one


@dataclass(frozen=True)
class Streamed:
    """An answer written as it is read (an export), not one JSON body. Its parameters are checked
    before it is returned, so that a bad one is still a JSON 400."""

    content_type: str
    chunks: AsyncIterator[bytes]
    filename: str


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


def check_id(value: str, what: str, config: Config) -> str:
    """An id no event could have carried is a 400, not a 404 (the core's id rule)."""
    problem = id_problem(value, config.limits.max_id_length)
    if problem is not None:
        raise ApiError(400, f"{what} {problem}")
    return value


async def stored_customer(store: ReadStore, config: Config, customer_id: str) -> Stored:
    """The customer as stored; 400 for an id no event could carry, 404 when there is none."""
    cid = check_id(customer_id, "customer id", config)
    stored = (await store.load([cid])).stored.get(cid)
    if stored is None:
        raise ApiError(404, f"unknown customer {customer_id!r}")
    return stored


async def customer(store: ReadStore, config: Config, customer_id: str, as_of_ms: int) -> dict[str, Any]:
    stored = await stored_customer(store, config, customer_id)
    card = score_card(stored.state, as_of_ms, config)
    body = card.to_dict()
    body["alerts_active"] = sorted(rule for rule, s in stored.alert_states.items() if s.active)
    body["why"] = explain(stored.state, as_of_ms, config, card).to_dict()
    return body


async def account_states(store: ReadStore, config: Config, account_id: str) -> list[CustomerState]:
    """The account's users (those whose newest account it is), read whole; 404 when it has none."""
    members = await store.account_members([check_id(account_id, "account id", config)])
    loaded = await store.load(members[account_id])
    states = [s.state for s in loaded.stored.values() if s.state.account_id == account_id]
    if not states:
        raise ApiError(404, f"unknown account {account_id!r}")
    return states


async def account(store: ReadStore, config: Config, account_id: str, as_of_ms: int) -> dict[str, Any]:
    return account_card(account_id, await account_states(store, config, account_id), as_of_ms, config).to_dict()


def live(as_of_ms: int, now_ms: int, config: Config) -> int:
    """Leaderboards, at-risk and KPIs are kept current, not recomputed: they answer for now.

    An `as_of` inside the current bucket is accepted (scores change only at bucket
    boundaries and due instants, which the worker applies as they pass); history is per
    customer, with /customers/{id}?as_of=.
    """
    if bucket_of(as_of_ms, config.scoring.bucket_ms) != bucket_of(now_ms, config.scoring.bucket_ms):
        raise ApiError(400, "as_of of a leaderboard, the at-risk list or the KPIs must be within the current "
                            "bucket (they are kept current); use /customers/{id}?as_of= for history")
    return as_of_ms


async def customer_history_read(store: ReadStore, config: Config, customer_id: str, as_of_ms: int) -> dict[str, Any]:
    """ES, CER and tier at the end of each bucket over history.horizon, and the change over 7 and 30 days."""
    stored = await stored_customer(store, config, customer_id)
    return {"customer_id": customer_id, **customer_history(stored.state, as_of_ms, config).to_dict()}


async def account_history_read(store: ReadStore, config: Config, account_id: str, as_of_ms: int) -> dict[str, Any]:
    """The account's users' histories rolled up per point (its users: those whose newest account it is)."""
    states = await account_states(store, config, account_id)
    return {"account_id": account_id, "users": len(states), **account_history(states, as_of_ms, config).to_dict()}


def parse_ids(body: bytes, config: Config) -> list[str]:
    """A batch lookup's body, `{"ids": [...]}`: 1..MAX_BATCH_IDS ids (integers as decimal strings,
    repeats once, in the order given); an id no event could carry is a 400 naming its place."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("ids"), list):
        raise ApiError(400, 'the body must be a JSON object {"ids": [...]}')
    ids = doc["ids"]
    if not 1 <= len(ids) <= MAX_BATCH_IDS:
        raise ApiError(400, f"ids must hold 1..{MAX_BATCH_IDS} ids (got {len(ids)})")
    out = []
    for i, value in enumerate(ids):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)
        if not isinstance(value, str):
            raise ApiError(400, f"ids[{i}] must be a string or a non-negative integer")
        out.append(check_id(value, f"ids[{i}]", config))
    return list(dict.fromkeys(out))


def standing_row(standing: Standing) -> dict[str, object]:
    """A customer as the cross-customer reads list it: its stored standing, active alerts and traits."""
    return {**standing.summary(), "alerts": list(standing.alerts), "traits": dict(standing.traits)}


async def customers_batch(store: ReadStore, ids: list[str], as_of_ms: int) -> dict[str, Any]:
    """Many customers in one read (a read_many script call per shard): their stored standings, kept current
    like the leaderboards; ids with no state are listed in `unknown`, not an error."""
    standings = await store.standings(ids)
    return {"as_of": as_of_ms, "customers": [standing_row(standings[c]) for c in ids if c in standings],
            "unknown": [c for c in ids if c not in standings]}


async def accounts_batch(store: ReadStore, config: Config, ids: list[str], as_of_ms: int) -> dict[str, Any]:
    """Many accounts in one read: each account's roll-up (GET /accounts/{id} without the per-type
    breakdown) from its users' stored standings; accounts with no user are listed in `unknown`."""
    members = await store.account_members(ids)
    standings = await store.standings(sorted({c for users in members.values() for c in users}))
    found, unknown = [], []
    for aid in ids:
        users = [standings[c] for c in members[aid] if c in standings and standings[c].account_id == aid]
        if users:
            weights = account_weights([dict(u.traits) for u in users], config)
            found.append(account_summary(aid, users, as_of_ms, config.scoring, weights).to_dict())
        else:
            unknown.append(aid)
    return {"as_of": as_of_ms, "accounts": found, "unknown": unknown}


async def leaderboard(store: ReadStore, config: Config, order: str, limit: int, as_of_ms: int,
                      segment: str | None = None) -> dict[str, Any]:
    """Customers by ES, overall or within a segment that has a leaderboard (each scored by its scorecard)."""
    if order not in ("top", "bottom"):
        raise ApiError(400, "order must be 'top' or 'bottom'")
    check_segment(segment, config, "leaderboard")
    ids = await store.ranked(order, limit, segment)
    standings = await store.standings(ids)
    return {"as_of": as_of_ms, "order": order, **({} if segment is None else {"segment": segment}),
            "customers": [standings[c].summary() for c in ids if c in standings]}


def check_segment(segment: str | None, config: Config, what: str) -> None:
    """A segment asked for by name must be one the product keeps apart (a bounded set)."""
    if segment is not None and segment not in ranked_segments(config):
        raise ApiError(400, f"segment {segment[:64]!r} has no {what}: give it a scorecard "
                            "([scorecards.<segment>]) or list it in kpis.segments")


async def segment_kpis(store: ReadStore, config: Config, latest: LatestKpis, as_of_ms: int | None,
                       segment: str | None) -> dict[str, Any]:
    """`/kpis`: of everyone or of one segment; exact at `as_of_ms`, else the latest answer."""
    check_segment(segment, config, "KPIs of its own")
    return await kpis(store, config, as_of_ms, segment) if as_of_ms is not None else await latest.get(segment)


async def at_risk(store: ReadStore, config: Config, limit: int, as_of_ms: int) -> dict[str, Any]:
    """Customers with an alert condition still active, lowest engagement score first."""
    ids, total = await asyncio.gather(store.ranked("risk", limit), store.count("risk"))
    standings = await store.standings(ids)
    rows = [standing_row(standings[c]) for c in ids if c in standings]
    return {"as_of": as_of_ms, "customers": rows, "total": total}


async def kpi_trend(store: ReadStore, config: Config, as_of_ms: int, segment: str | None = None) -> dict[str, Any]:
    """The headline KPIs per bucket over kpis.window, oldest first: each bucket's KPIs as last
    computed in it by a worker (the live page's trend charts); of one segment's customers when given."""
    check_segment(segment, config, "KPIs of its own")
    first = window_start_bucket(as_of_ms, config.kpis.window_ms, config.scoring.bucket_ms)
    trend = await store.kpi_trend(segment)
    return {"as_of": as_of_ms, "bucket_ms": config.scoring.bucket_ms, **({} if segment is None else {"segment": segment}),
            "points": [{"bucket": b, **trend[b]} for b in sorted(trend) if first <= b <= as_of_ms // config.scoring.bucket_ms]}


def export_selection(query: Mapping[str, str], config: Config) -> customers_csv.Selection:
    """`/customers.csv`'s filters: segment (one kept apart), tier, below_benchmark (true/false)."""
    segment = query.get("segment") or None
    check_segment(segment, config, "leaderboard to export")
    tier = query.get("tier") or None
    if tier is not None and tier not in {t.value for t in Tier}:
        raise ApiError(400, f"tier must be one of {', '.join(t.value for t in Tier)}")
    below = query.get("below_benchmark") or None
    if below is not None and below not in ("true", "false"):
        raise ApiError(400, "below_benchmark must be true or false")
    return customers_csv.Selection(segment, None if tier is None else Tier(tier),
                                   None if below is None else below == "true")


async def customers_export(store: ReadStore, config: Config, query: Mapping[str, str]) -> Streamed:
    """The stored standings with traits as CSV, lowest ES first, streamed a page at a time."""
    selection = export_selection(query, config)
    return Streamed("text/csv; charset=utf-8", customers_csv.export(store, config, selection), "customers.csv")


ALERT_FILTERS = ("state", "rule", "owner", "segment")


async def alerts(store: Any, query: Mapping[str, str]) -> dict[str, Any]:
    """Customer alerts as a team works them, newest first, filtered by state, rule, owner, segment."""
    filters = {name: query.get(name) or None for name in ALERT_FILTERS}
    if filters["state"] is not None and filters["state"] not in {s.value for s in WorkState}:
        raise ApiError(400, f"state must be one of {', '.join(s.value for s in WorkState)}")
    if filters["rule"] is not None and filters["rule"] not in {r.value for r in Rule}:
        raise ApiError(400, f"rule must be one of {', '.join(r.value for r in Rule)}")
    for name in ("owner", "segment"):
        if filters[name] is not None and len(filters[name]) > 200:
            raise ApiError(400, f"{name} must be at most 200 characters")
    return await alert_work.listing(store, now_ms(), parse_limit(query, 50), filters)


async def act_on_alert(store: Any, alert_id: str, body: bytes, snooze: bool) -> dict[str, Any]:
    """Acknowledge (or snooze) an alert's condition: its later alerts are recorded, not sent."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    now = now_ms()
    try:
        work = acted(doc, now, snooze)
    except WorkError as err:
        raise ApiError(400, str(err)) from None
    try:
        row = await alert_work.act(store, alert_id, work, now)
    except alert_work.Resolved:
        raise ApiError(409, f"alert {alert_id[:64]!r} is resolved: its condition has ended") from None
    if row is None:
        raise ApiError(404, f"no alert {alert_id[:64]!r}")
    return row


def routes(store: ReadStore, config: Config, latest: LatestKpis) -> list[Route]:
    """Every API route and its handler: the bearer-token guard, the page, health, metrics and
    the OpenAPI document are the server's own. `/kpis` without `as_of` is `latest`'s."""

    def live_as_of(query: Mapping[str, str]) -> int:
        now = now_ms()
        return live(parse_as_of(query, now), now, config)

    async def recent_alerts(query: Mapping[str, str], _: Mapping[str, str], __: bytes) -> dict[str, Any]:
        return {"alerts": await store.recent_alerts(parse_limit(query, 20))}

    return [
        Route("GET", "/alerts", lambda q, p, _: alerts(store, q)),
        Route("POST", "/alerts/{alert_id}/acknowledge", lambda q, p, body: act_on_alert(store, p["alert_id"], body, False),
              write=True),
        Route("POST", "/alerts/{alert_id}/snooze", lambda q, p, body: act_on_alert(store, p["alert_id"], body, True),
              write=True),
        Route("GET", "/customers/{customer_id}",
              lambda q, p, _: customer(store, config, p["customer_id"], parse_as_of(q, now_ms()))),
        Route("GET", "/accounts/{account_id}",
              lambda q, p, _: account(store, config, p["account_id"], parse_as_of(q, now_ms()))),
        Route("GET", "/customers/{customer_id}/history",
              lambda q, p, _: customer_history_read(store, config, p["customer_id"], parse_as_of(q, now_ms()))),
        Route("GET", "/accounts/{account_id}/history",
              lambda q, p, _: account_history_read(store, config, p["account_id"], parse_as_of(q, now_ms()))),
        Route("GET", "/customers.csv", lambda q, p, _: customers_export(store, config, q)),
        Route("POST", "/customers:batch", lambda q, p, body: customers_batch(store, parse_ids(body, config),
                                                                            live_as_of(q))),
        Route("POST", "/accounts:batch", lambda q, p, body: accounts_batch(store, config, parse_ids(body, config),
                                                                          live_as_of(q))),
        Route("GET", "/leaderboard", lambda q, p, _: leaderboard(store, config, q.get("order", "top"),
                                                                 parse_limit(q), live_as_of(q), q.get("segment"))),
        Route("GET", "/at-risk", lambda q, p, _: at_risk(store, config, parse_limit(q, 50), live_as_of(q))),
        Route("GET", "/kpis", lambda q, p, _: segment_kpis(store, config, latest, live_as_of(q) if q.get("as_of") else None,
                                                           q.get("segment"))),
        Route("GET", "/kpis/trend", lambda q, p, _: kpi_trend(store, config, live_as_of(q), q.get("segment"))),
        Route("GET", "/alerts/recent", recent_alerts),
    ]


async def answer(handler: Handler, query: Mapping[str, str], params: Mapping[str, str],
                 body: bytes = b"") -> tuple[int, Any]:
    """(status, JSON body) of a request: an ApiError is its own status, anything else a JSON 500."""
    try:
        return 200, await handler(query, params, body)
    except ApiError as err:
        return err.status, {"error": err.message, "status": err.status}
    except Exception:  # noqa: BLE001 - never a bare 500 page
        log.exception("request failed")
        return 500, {"error": "internal error", "status": 500}
