"""GET /openapi.json describes every route, and the batch lookups answer as the core would.

Fast tier: the store is the in-memory Redis. The real responses of a worker and of
`engage api` are checked against the same schemas on the real stack (test_pipeline.py).
"""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
from jsonschema import Draft202012Validator

from scoring.engine import Scorer
from streams.serve import api, openapi
from streams.serve.api_server import create_api
from streams.state.kpis import LatestKpis
from streams.clock import now_ms
from streams.state.layout import Keys
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from streams.settings import load_settings
from streams.state.store import RedisStore
from tests.builders import CONFIG, ev
from tests.openapi_check import schema_errors
from tests.streams.memory_redis import MemoryRedis

SETTINGS = load_settings(env={"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENGAGE_REDIS_URL": "redis://127.0.0.1:1/0"})
WORKER_ONLY = {("GET", "/metrics")}      # `engage api` has no pipeline to measure


def documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in openapi.document()["paths"].items() for method in item}


def test_every_route_engage_api_serves_is_documented_and_every_documented_route_is_served():
    app = create_api(SETTINGS, CONFIG, RedisStore(MemoryRedis(), Keys("doc")))
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource.canonical != "/{path}"}
    assert served == documented() - WORKER_ONLY
    latest = LatestKpis(RedisStore(MemoryRedis(), Keys("doc")), CONFIG, 1.0)
    assert {(r.method, r.path) for r in api.routes(RedisStore(MemoryRedis(), Keys("doc")), CONFIG, latest)} \
        <= documented()


def test_the_document_is_openapi_3_1_with_valid_schemas_and_every_reference_resolves():
    doc = openapi.document()
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        assert schema.get("type") == "object", name
    refs = re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', orjson.dumps(doc).decode())
    assert refs and set(refs) <= set(schemas)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            assert "200" in operation["responses"], (method, path)


def test_the_kpi_schema_is_every_business_kpi_and_nothing_else():
    kpis = Scorer(CONFIG).kpis(now_ms()).to_dict()
    assert schema_errors("GET", "/kpis", 200, kpis) == []
    assert schema_errors("GET", "/kpis", 200, {**kpis, "invented": 1}) != []       # closed: a new field fails
    assert schema_errors("GET", "/kpis", 200, {k: v for k, v in kpis.items() if k != "csat_overall"}) != []


def run_batches(*events: dict) -> tuple[RedisStore, Scorer, int]:
    now = now_ms()
    store = RedisStore(MemoryRedis(), Keys("batch"))
    raws = [orjson.dumps(e) for e in events]
    asyncio.run(BatchWriter(CONFIG, store).write(
        [Incoming(raw, None, "events", 0, i, now) for i, raw in enumerate(raws)], now))
    reference = Scorer(CONFIG)
    reference.process_batch(raws, now)
    return store, reference, now


def test_a_customers_batch_lists_found_customers_in_the_order_asked_and_the_unknown_apart():
    at = now_ms() - 3_600_000
    store, reference, now = run_batches(
        ev("b", "like", at, count=40, account_id="acme"), ev("a", "purchase", at, value=20),
        ev("c", "member_joined", at - 20 * 86_400_000), ev("a", "comment", at),
        ev("a", "traits", at, traits={"owner": "ana", "renewal_date": "2027-04-01", "email": "a@example.com"}))
    ids = api.parse_ids(orjson.dumps({"ids": ["b", "nobody", "a", "b", "c", "ghost"]}), CONFIG)
    body = asyncio.run(api.customers_batch(store, ids, now))
    assert schema_errors("POST", "/customers:batch", 200, body) == []
    assert [row["customer_id"] for row in body["customers"]] == ["b", "a", "c"]      # asked order, once each
    assert body["unknown"] == ["nobody", "ghost"]
    for row in body["customers"]:
        cid = row["customer_id"]
        card = reference.customer(cid, now)
        assert (row["es"], row["cer"], row["tier"], row["active"], row["account_id"]) == \
            (round(card.es, 6), card.cer, card.tier.value, card.active, card.account_id)
        assert row["alerts"] == sorted(r for r, s in reference.alert_states[cid].items() if s.active)
        assert row["traits"] == card.traits                        # the allowed ones, a date as shown
    assert body["customers"][1]["traits"] == {"owner": "ana", "renewal_date": "2027-04-01"}
    assert body["customers"][2]["alerts"] == ["inactive", "not_activated"]    # c joined 20 days ago, never active


def test_an_accounts_batch_rolls_up_the_users_as_the_single_account_read_does():
    at = now_ms() - 3_600_000
    store, reference, now = run_batches(
        ev("u1", "like", at, count=300, account_id="acme"), ev("u2", "comment", at, account_id="acme"),
        ev("u3", "share", at, account_id="globex"), ev("u4", "like", at))
    body = asyncio.run(api.accounts_batch(store, CONFIG, ["globex", "acme", "initech"], now))
    assert schema_errors("POST", "/accounts:batch", 200, body) == []
    assert [a["account_id"] for a in body["accounts"]] == ["globex", "acme"] and body["unknown"] == ["initech"]
    for summary in body["accounts"]:
        full = orjson.loads(orjson.dumps(reference.account(summary["account_id"], now).to_dict()))
        full.pop("breakdown")
        full.pop("measures")
        full.pop("traits")
        assert summary == full


@pytest.mark.parametrize(("body", "message"), [
    (b"", "JSON object"), (b"[1, 2]", "JSON object"), (b'{"id": ["a"]}', "JSON object"),
    (b'{"ids": "a"}', "JSON object"), (b'{"ids": []}', "1..1000"),
    (orjson.dumps({"ids": [str(i) for i in range(1001)]}), "got 1001"),
    (b'{"ids": ["a", null]}', "ids[1] must be a string"), (b'{"ids": ["a", true]}', "ids[1]"),
    (b'{"ids": ["a", -3]}', "ids[1]"), (b'{"ids": ["{x}"]}', "ids[0] must be printable"),
    (b'{"ids": [""]}', "ids[0] must not be empty"), (orjson.dumps({"ids": ["x" * 200]}), "ids[0] longer"),
])
def test_a_bad_batch_body_is_a_400_naming_what_is_wrong(body, message):
    with pytest.raises(api.ApiError) as info:
        api.parse_ids(body, CONFIG)
    assert info.value.status == 400 and message in info.value.message


def test_integer_ids_are_read_as_decimal_strings():
    assert api.parse_ids(b'{"ids": [42, "42", "7"]}', CONFIG) == ["42", "7"]


def test_engage_api_serves_the_batch_lookups_over_http_and_a_wrong_method_is_a_json_405():
    from aiohttp.test_utils import TestClient, TestServer

    at = now_ms() - 3_600_000
    store, reference, _ = run_batches(ev("a", "like", at, account_id="acme"), ev("b", "share", at))

    async def run() -> None:
        async with TestClient(TestServer(create_api(SETTINGS, CONFIG, store))) as client:
            response = await client.post("/customers:batch", data=b'{"ids": ["b", "zed"]}')
            body = await response.json()
            assert response.status == 200 and [r["customer_id"] for r in body["customers"]] == ["b"]
            assert body["unknown"] == ["zed"]
            response = await client.post("/accounts:batch", json={"ids": ["acme"]})
            assert response.status == 200 and (await response.json())["accounts"][0]["users"] == 1
            response = await client.post("/customers:batch", data=b"not json")
            assert response.status == 400 and (await response.json())["status"] == 400
            response = await client.get("/customers:batch")
            assert response.status == 405 and response.headers["Allow"] == "POST"
            assert await response.json() == {"error": "GET is not allowed on /customers:batch", "status": 405}
            response = await client.get("/openapi.json")
            assert response.status == 200 and await response.json() == orjson.loads(orjson.dumps(openapi.document()))

    asyncio.run(run())


def test_the_history_reads_equal_the_cores_and_an_unknown_id_is_a_404():
    from scoring.history import account_history, customer_history

    at = now_ms() - 3 * 86_400_000
    store, reference, now = run_batches(ev("a", "like", at, count=30, account_id="acme"),
                                        ev("b", "comment", at + 86_400_000, account_id="acme"))
    body = asyncio.run(api.customer_history_read(store, CONFIG, "a", now))
    assert schema_errors("GET", "/customers/{customer_id}/history", 200, body) == []
    assert body == orjson.loads(orjson.dumps({"customer_id": "a",
                                              **customer_history(reference.customers["a"], now, CONFIG).to_dict()}))
    es_now = body["points"][-1]["es"]
    assert len(body["points"]) == 31 and es_now > 0 and body["change"] == {"7d": es_now, "30d": es_now}  # 0 before
    body = asyncio.run(api.account_history_read(store, CONFIG, "acme", now))
    users = [reference.customers["a"], reference.customers["b"]]
    assert body == orjson.loads(orjson.dumps({"account_id": "acme", "users": 2,
                                              **account_history(users, now, CONFIG).to_dict()}))
    for call in (api.customer_history_read(store, CONFIG, "nobody", now), api.account_history_read(store, CONFIG, "nobody", now)):
        with pytest.raises(api.ApiError) as info:
            asyncio.run(call)
        assert info.value.status == 404
