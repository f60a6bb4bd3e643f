"""`engage alert-sink`'s choices: a customer alert goes by the first route that takes it (rule, segment
as recorded, owner), within the route's hourly limit, and not at all while its condition is acknowledged
or snoozed; an account alert to the default webhook. Redis in memory, the webhooks recorded."""

from __future__ import annotations

import asyncio

import orjson

from scoring.alert_work import Work, WorkState
from scoring.config import load_config
from streams.clock import now_ms
from streams.settings import load_settings
from streams.sink.alert_sink import AlertSink
from streams.state.layout import Keys
from streams.state.store import RedisStore
from tests.streams.memory_redis import MemoryRedis

SETTINGS = load_settings(env={"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENGAGE_REDIS_URL": "redis://127.0.0.1:1/0"})
CONFIG = load_config(overrides={"alerts": {"routes": {
    "a_enterprise": {"webhook": "cs-enterprise", "segments": ["enterprise"], "max_per_hour": 2},
    "b_ana": {"webhook": "ana", "owners": ["ana"]}}}})


class Recorded:
    """A webhook that records what it was sent."""

    def __init__(self, name: str) -> None:
        self.url, self.name, self.sent, self.failures = f"http://{name}.example", name, [], 0

    async def deliver(self, payload: dict) -> None:
        self.sent.append(payload["ids"] if "ids" in payload else payload["id"])     # a digest: its alerts' ids

    async def close(self) -> None:
        pass


def alert(cid: str, rule: str = "inactive", owner: str | None = None, n: int = 0) -> dict:
    return {"id": f"{cid}-{rule}-{n}", "rule": rule, "customer_id": cid, "account_id": None, "as_of": n,
            "before": {}, "after": {}, "breakdown": [], "traits": {"owner": owner} if owner else {}}


def test_alerts_go_by_their_route_within_its_limit_and_not_while_their_condition_is_worked():
    store = RedisStore(MemoryRedis(), Keys("w"))
    default, enterprise, ana = Recorded("default"), Recorded("cs-enterprise"), Recorded("ana")
    sink = AlertSink(SETTINGS, default, routes=CONFIG.alerts.routes,  # type: ignore[arg-type]
                     senders={"cs-enterprise": enterprise, "ana": ana}, store=store)

    async def recorded_in(cid: str, alert_id: str, segment: str) -> None:
        await store.redis.hset(store.keys.alert(store.keys.shard_of(cid), alert_id), "s", segment)

    async def worked(cid: str, rule: str, work: Work) -> None:
        await store.redis.hset(store.keys.alert_work(cid), rule, orjson.dumps(work.to_dict()))

    async def scenario() -> None:
        for n in range(3):                                  # enterprise customers: two an hour, then none
            await recorded_in(f"e{n}", f"e{n}-inactive-0", "enterprise")
            await sink._deliver(orjson.dumps(alert(f"e{n}", owner="ana")), n)
        await sink._deliver(orjson.dumps(alert("s1", owner="ana")), 3)          # no segment: ana's route
        await sink._deliver(orjson.dumps(alert("s2", owner="bob")), 4)          # no route: the default
        account = {**alert("x"), "customer_id": None, "account_id": "acme", "rule": "account_score_drop"}
        await sink._deliver(orjson.dumps(account), 5)
        await worked("s3", "inactive", Work(WorkState.ACKNOWLEDGED, "ana", "", now_ms()))
        await sink._deliver(orjson.dumps(alert("s3", owner="bob")), 6)          # acknowledged: not sent
        await sink._deliver(orjson.dumps(alert("s3", rule="score_drop", owner="bob")), 7)   # another condition
        await worked("s4", "inactive", Work(WorkState.SNOOZED, "ana", "", now_ms(), until_ms=now_ms() + 60_000))
        await worked("s5", "inactive", Work(WorkState.SNOOZED, "ana", "", now_ms() - 2, until_ms=now_ms() - 1))
        await sink._deliver(orjson.dumps(alert("s4")), 8)                       # snoozed: not sent
        await sink._deliver(orjson.dumps(alert("s5")), 9)                       # the snooze ran out: sent

    asyncio.run(scenario())
    assert enterprise.sent == ["e0-inactive-0", "e1-inactive-0"]
    assert ana.sent == ["s1-inactive-0"]
    assert default.sent == ["s2-inactive-0", "x-inactive-0", "s3-score_drop-0", "s5-inactive-0"]
    counted = {s.labels["reason"]: s.value for m in sink.metrics.not_sent.collect() for s in m.samples
               if s.name.endswith("_total")}
    assert counted == {"rate_limited": 1.0, "acknowledged": 1.0, "snoozed": 1.0}
    assert sink.metrics.delivered._value.get() == len(enterprise.sent) + len(ana.sent) + len(default.sent)


def test_a_digest_route_holds_its_alerts_in_redis_and_sends_them_as_one_message_at_its_time():
    from scoring.alert_routes import DAY_MS, next_digest

    config = load_config(overrides={"alerts": {"routes": {"daily": {"webhook": "cs", "rules": ["inactive"],
                                                                    "digest": "09:00"}}}})
    store = RedisStore(MemoryRedis(), Keys("w"))
    default, daily = Recorded("default"), Recorded("cs")
    sink = AlertSink(SETTINGS, default, routes=config.alerts.routes, senders={"cs": daily}, store=store)  # type: ignore[arg-type]
    (route,) = config.alerts.routes
    start = 20_000 * DAY_MS + 10 * 3_600_000                   # 10:00 UTC: the first digest is due tomorrow 09:00

    async def scenario() -> list[int]:
        await sink.send_due_digests(start)                     # first sight: the next time is set, nothing sent
        for n in range(3):
            await sink._deliver(orjson.dumps(alert(f"c{n}", n=n)), n)
        await sink._deliver(orjson.dumps(alert("c9", rule="score_drop")), 9)      # not the route's rule: alone
        await sink.send_due_digests(next_digest(route, start) - 1)               # not yet
        before = list(daily.sent)
        await sink.send_due_digests(next_digest(route, start))
        return before

    assert asyncio.run(scenario()) == [] and default.sent == ["c9-score_drop-0"]
    assert daily.sent == [["c0-inactive-0", "c1-inactive-1", "c2-inactive-2"]]     # one message, every alert
    assert asyncio.run(store.redis.lrange(store.keys.digest("daily"), 0, -1)) == []
    assert int(asyncio.run(store.redis.get(store.keys.digest_due("daily")))) == next_digest(route, start) + DAY_MS
    assert (sink.metrics.digested._value.get(), sink.metrics.digests._value.get()) == (3, 1)
