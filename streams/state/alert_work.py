"""Customer alerts as a team works them, in Redis: recorded with the write that raised them,
listed, acknowledged and snoozed (the rules: scoring.alert_work).

Each alert is recorded in its customer's shard, in the same script call as the customer's
change and the alert's outbox entry (`record`), so an alert is listed exactly when it is
published. What a person did is kept per customer and rule (the condition, not the message),
and the write that ends the condition forgets it and stamps the end (`layout.write_delta`): no
later read has to decide when a condition ended. Listing reads the shards' alert indexes newest
first, a page at a time: it never visits customers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from scoring.alert_work import Work, WorkState, state_of
from scoring.deltas import CustomerDelta
from streams.state.layout import SHARDS, Ops
from streams.state.outbox import Kind, Output

class Resolved(Exception):
    """The alert's condition has ended: there is nothing left to act on."""


PAGE = 200          # alert ids read per shard per round of a listing
MAX_EXAMINED = 20_000   # alerts a listing looks at before it answers with what it found


def record(ops: Ops, keys: Any, shard: int, outputs: Iterable[Output], deltas: Iterable[CustomerDelta],
           fallback_ms: int) -> None:
    """The customer alerts among `outputs`, recorded beside the changes of the customers that raised
    them (an alert is raised by its customer's change in the same write: other outputs are not alerts
    to work, e.g. a dead letter re-recorded on its own)."""
    alerts = [o for o in outputs if o.kind is Kind.ALERT and o.key is not None]
    if not alerts:                                   # most writes raise none: nothing to look up
        return
    changed = {d.customer_id: d for d in deltas}
    for output in alerts:
        delta = changed.get(output.key.decode())  # type: ignore[union-attr]
        if delta is None:
            continue
        cid = delta.customer_id
        at = delta.at_ms or fallback_ms
        segment = delta.new.segment if delta.new is not None else None
        rule = orjson.loads(output.value)["rule"]
        ops.add("HSET", keys.alert(shard, output.output_id), "v", output.value.decode(), "t", str(at), "c", cid,
                "r", rule, "s", segment or "")
        ops.add("ZADD", keys.shared(shard, "alerts"), at, output.output_id)


async def trim(store: Any, shard: int, before_ms: int) -> int:
    """Forget the shard's alerts recorded before `before_ms` (past the state's retention)."""
    index = store.keys.shared(shard, "alerts")
    old = await store.redis.zrangebyscore(index, "-inf", f"({before_ms}")
    if old:
        async with store.redis.pipeline(transaction=False) as pipe:
            for alert_id in old:
                pipe.delete(store.keys.alert(shard, alert_id.decode()))
            pipe.zrem(index, *old)
            await pipe.execute()
    return len(old)


async def find(store: Any, alert_id: str) -> tuple[int, dict[str, Any]] | None:
    """(shard, record) of an alert by its id: one look in each shard, never a scan."""
    async with store.redis.pipeline(transaction=False) as pipe:
        for shard in range(SHARDS):
            pipe.hgetall(store.keys.alert(shard, alert_id))
        found = await pipe.execute()
    for shard, raw in enumerate(found):
        if raw:
            return shard, _record(raw)
    return None


async def act(store: Any, alert_id: str, work: Work, now_ms: int) -> dict[str, Any] | None:
    """Record what a person did about the alert's condition; the alert as now listed, or None."""
    found = await find(store, alert_id)
    if found is None:
        return None
    _, record_ = found
    row = (await _listed(store, [record_], now_ms))[0]
    if row["state"] == WorkState.RESOLVED.value:
        raise Resolved(alert_id)
    await store.redis.hset(store.keys.alert_work(record_["customer_id"]), record_["rule"],
                           orjson.dumps(work.to_dict()))
    # not resolved, so what was just done is its state (a snooze always ends in the future)
    return {**row, "state": work.state.value, "work": work.to_dict()}


async def as_recorded(store: Any, customer_id: str, rule: str, alert_id: str) -> tuple[Work | None, str | None]:
    """What the alert sink needs of a customer alert, in one round trip: what was done about its
    condition in the current episode (None: nothing) and the segment it was recorded with (None:
    none, or not recorded)."""
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hget(store.keys.alert_work(customer_id), rule)
        pipe.hget(store.keys.alert(store.keys.shard_of(customer_id), alert_id), "s")
        raw_work, raw_segment = await pipe.execute()
    return (None if raw_work is None else Work.from_dict(orjson.loads(raw_work)),
            raw_segment.decode() or None if raw_segment else None)


async def listing(store: Any, now_ms: int, limit: int, filters: Mapping[str, str | None]) -> dict[str, Any]:
    """The newest alerts matching `filters` (state, rule, owner, segment), newest first; `more` says
    that another matches (one past `limit` was found), or that the search stopped at MAX_EXAMINED."""
    cursors = dict.fromkeys(range(SHARDS), 0)
    waiting: list[tuple[float, str, int]] = []          # (recorded, id, shard) read but not yet examined
    lowest: dict[int, float] = {}                        # a shard with more to read: its oldest read so far
    found: list[dict[str, Any]] = []
    examined = 0
    while cursors or waiting:
        async with store.redis.pipeline(transaction=False) as pipe:
            for shard, start in cursors.items():
                pipe.zrevrange(store.keys.shared(shard, "alerts"), start, start + PAGE - 1, withscores=True)
            pages = await pipe.execute()
        for (shard, start), page in zip(list(cursors.items()), pages):
            waiting += [(score, member.decode(), shard) for member, score in page]
            if len(page) < PAGE:
                del cursors[shard]
                lowest.pop(shard, None)
            else:
                cursors[shard], lowest[shard] = start + PAGE, page[-1][1]
        # newest first across the shards: what is newer than every shard's unread rest is examined now
        horizon = max(lowest.values(), default=None)
        waiting.sort(key=lambda w: (-w[0], w[1]))
        ready = [w for w in waiting if horizon is None or w[0] > horizon]
        waiting = waiting[len(ready):]
        records = await _read(store, ready)
        for row in await _listed(store, records, now_ms):
            if all(value is None or row.get(key) == value for key, value in filters.items()):
                found.append(row)
                if len(found) > limit:
                    return {"as_of": now_ms, "alerts": found[:limit], "more": True}
        examined += len(ready)
        if examined >= MAX_EXAMINED:
            return {"as_of": now_ms, "alerts": found, "more": True}
        if not ready and not cursors:
            break
    return {"as_of": now_ms, "alerts": found, "more": False}


async def _read(store: Any, entries: list[tuple[float, str, int]]) -> list[dict[str, Any]]:
    async with store.redis.pipeline(transaction=False) as pipe:
        for _, alert_id, shard in entries:
            pipe.hgetall(store.keys.alert(shard, alert_id))
        return [_record(raw) for raw in await pipe.execute() if raw]


def _record(raw: Mapping[bytes, bytes]) -> dict[str, Any]:
    return {"alert": orjson.loads(raw[b"v"]), "recorded_ms": int(raw[b"t"]), "customer_id": raw[b"c"].decode(),
            "rule": raw[b"r"].decode(), "segment": raw[b"s"].decode() or None}


async def _listed(store: Any, records: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """The rows `GET /alerts` shows: each alert with its state and what was done about it."""
    if not records:
        return []
    async with store.redis.pipeline(transaction=False) as pipe:
        for r in records:
            pipe.hget(store.keys.alert_work(r["customer_id"]), r["rule"])
            pipe.hget(store.keys.alert_resolved(r["customer_id"]), r["rule"])
        replies = await pipe.execute()
    standings = await store.standings(sorted({r["customer_id"] for r in records}))
    rows = []
    for i, r in enumerate(records):
        raw_work, raw_resolved = replies[2 * i], replies[2 * i + 1]
        work = None if raw_work is None else Work.from_dict(orjson.loads(raw_work))
        resolved = None if raw_resolved is None else int(raw_resolved)
        standing = standings.get(r["customer_id"])
        active = standing is not None and r["rule"] in standing.alerts
        state = state_of(r["recorded_ms"], resolved, active, work, now_ms)
        traits = r["alert"].get("traits") or {}
        rows.append({"id": r["alert"].get("id"), "state": state.value, "rule": r["rule"],
                     "customer_id": r["customer_id"], "account_id": r["alert"].get("account_id"),
                     "owner": traits.get("owner"), "segment": r["segment"], "recorded": r["recorded_ms"],
                     "resolved": resolved if state is WorkState.RESOLVED else None,
                     "work": None if work is None or state is WorkState.RESOLVED else work.to_dict(),
                     "alert": r["alert"]})
    return rows
