"""Working alerts through `engage api` on a real Redis: listed by state, rule, owner and segment;
acknowledged and snoozed with the write token only; resolved by the write that ends the condition."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import orjson
import pytest

from scoring.config import load_config
from scoring.timeutil import DAY
from streams.state.store import RedisStore
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from tests.streams.support import ApiProcess, now_ms

pytestmark = pytest.mark.services
CONFIG = load_config(overrides={"alerts": {"inactivity": "2d"}, "kpis": {"segments": ["smb"]}})
READ, WRITE = "reader-token-0123456789", "writer-token-0123456789"


def call(url: str, token: str | None = None, body: object | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_alerts_are_listed_acknowledged_snoozed_and_resolved_by_their_condition(stack, unique, tmp_path):
    now = now_ms()
    ana, bob = f"{unique}-ana", f"{unique}-bob"

    def ev(cid: str, kind: str, ts: int, n: int, **fields: object) -> bytes:
        return orjson.dumps({"event_id": f"{cid}-{n}", "customer_id": cid, "type": kind, "ts": ts, **fields})

    joined = [ev(ana, "member_joined", now - 3 * DAY, 0, segment="smb", traits={"owner": "ana"}),
              ev(bob, "member_joined", now - 3 * DAY, 0, traits={"owner": "bob"}),
              ev(ana, "like", now - 3 * DAY, 2), ev(bob, "like", now - 3 * DAY, 2)]

    async def work(events: list[bytes], at: int, sweep: bool) -> None:
        store = RedisStore.from_url(stack.redis_url, unique)
        try:
            await store.check_layout()
            writer = BatchWriter(CONFIG, store)
            fired = (await writer.write([Incoming(e, None, "events", 0, i, at) for i, e in enumerate(events)], at)).alerts
            if sweep:
                fired += (await writer.sweep(at)).alerts
                assert sorted((a.customer_id, a.rule.value) for a in fired) == [(ana, "inactive"), (bob, "inactive")]
        finally:
            await store.close()

    asyncio.run(work(joined, now, sweep=True))         # two members silent for 3 days: inactive, both
    api = ApiProcess(stack, unique, tmp_path, extra_env={"ENGAGE_API_TOKEN": READ, "ENGAGE_API_WRITE_TOKEN": WRITE})
    readonly = ApiProcess(stack, unique, tmp_path, "api-readonly", extra_env={"ENGAGE_API_TOKEN": READ})
    try:
        api.wait_until(lambda: call(api.url + "/healthz")[0] == 200, "the API to listen")
        assert call(api.url + "/alerts")[0] == 401
        status, body = call(api.url + "/alerts?state=open", READ)
        assert status == 200 and [(a["customer_id"], a["state"], a["owner"]) for a in
                                  sorted(body["alerts"], key=lambda a: a["customer_id"])] == [
            (ana, "open", "ana"), (bob, "open", "bob")] and body["more"] is False
        [of_ana] = call(api.url + "/alerts?owner=ana", READ)[1]["alerts"]
        assert call(api.url + "/alerts?segment=smb", READ)[1]["alerts"] == [of_ana] and of_ana["segment"] == "smb"
        assert of_ana["alert"]["why"]["sentence"].startswith("No activity for ")
        [of_bob] = call(api.url + "/alerts?owner=bob&rule=inactive", READ)[1]["alerts"]
        assert call(api.url + "/alerts?state=sleeping", READ)[0] == 400

        acknowledge = f"{api.url}/alerts/{of_ana['id']}/acknowledge"
        assert call(acknowledge, None, {"by": "ana"})[0] == 401
        assert call(acknowledge, READ, {"by": "ana"})[0] == 401             # the read token does not write
        readonly.wait_until(lambda: call(readonly.url + "/healthz")[0] == 200, "the read-only API to listen")
        assert call(f"{readonly.url}/alerts/{of_ana['id']}/acknowledge", WRITE, {"by": "ana"})[0] == 403
        status, body = call(acknowledge, WRITE, {"note": "no by"})
        assert status == 400 and body["error"].startswith("by: ")
        assert call(f"{api.url}/alerts/{unique}-nope/acknowledge", WRITE, {"by": "ana"})[0] == 404
        status, acked = call(acknowledge, WRITE, {"by": "ana", "note": "calling them Monday"})
        assert status == 200 and acked["state"] == "acknowledged" and acked["work"]["note"] == "calling them Monday"
        status, snoozed = call(f"{api.url}/alerts/{of_bob['id']}/snooze", WRITE,
                               {"by": "bob", "until": now + 7 * DAY})
        assert status == 200 and (snoozed["state"], snoozed["work"]["until"]) == ("snoozed", now + 7 * DAY)
        assert [a["id"] for a in call(api.url + "/alerts?state=acknowledged", READ)[1]["alerts"]] == [of_ana["id"]]
        assert [a["id"] for a in call(api.url + "/alerts?state=snoozed", READ)[1]["alerts"]] == [of_bob["id"]]

        # ana is active again: the write that ends her condition resolves the alert and forgets the work
        asyncio.run(work([ev(ana, "like", now, 1)], now + 1000, sweep=False))
        [resolved] = call(api.url + "/alerts?state=resolved", READ)[1]["alerts"]
        assert resolved["id"] == of_ana["id"] and resolved["work"] is None and resolved["resolved"] >= now
        status, body = call(acknowledge, WRITE, {"by": "ana"})
        assert status == 409 and "resolved" in body["error"]
        assert call(api.url + "/alerts?state=open", READ)[1]["alerts"] == []

        # silent again, three days on: a new condition, a new alert, open (what was done about the last one is gone)
        async def silent_again() -> list:
            store = RedisStore.from_url(stack.redis_url, unique)
            try:
                return (await BatchWriter(CONFIG, store).sweep(now + 3 * DAY)).alerts
            finally:
                await store.close()

        assert [(a.customer_id, a.rule.value) for a in asyncio.run(silent_again())] == [(ana, "inactive")]
        [again] = call(api.url + "/alerts?state=open", READ)[1]["alerts"]
        assert again["customer_id"] == ana and again["id"] != of_ana["id"] and again["work"] is None
        assert [a["id"] for a in call(api.url + "/alerts?owner=ana", READ)[1]["alerts"]] == [again["id"], of_ana["id"]]
    finally:
        api.stop()
        readonly.stop()
