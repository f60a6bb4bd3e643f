"""`engage api`: the read API in a process of its own, on a real Redis.

Its answers equal the worker's, and so the core's, in the end-to-end tests
(tests/streams/test_pipeline.py, single Redis and Redis Cluster); here, what is its own:
the token guard, health, readiness, the page, errors, and that it never writes.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import orjson
import pytest
import redis as redis_sync

from scoring.engine import Scorer
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from streams.state.store import RedisStore
from tests.streams.support import ApiProcess, now_ms
from tests.builders import CONFIG

pytestmark = pytest.mark.services
TOKEN = "s3cret-api-token"


def fetch(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_engage_api_guards_reads_answers_health_and_never_writes(stack, unique, tmp_path):
    now = now_ms()
    events = [orjson.dumps({"event_id": f"{unique}-{i}", "customer_id": f"{unique}-c{i % 3}", "type": "like",
                            "ts": now - 1000 * i}) for i in range(12)]
    empty = f"{unique}-empty"

    async def write() -> None:
        store = RedisStore.from_url(stack.redis_url, unique)
        try:
            await store.check_layout()
            await BatchWriter(CONFIG, store).write([Incoming(e, None, "events", 0, i, now)
                                                         for i, e in enumerate(events)], now)
        finally:
            await store.close()

    asyncio.run(write())
    reference = Scorer(CONFIG)
    reference.process_batch(events, now)
    api = ApiProcess(stack, unique, tmp_path, extra_env={"ENGAGE_API_TOKEN": TOKEN})
    idle = ApiProcess(stack, empty, tmp_path, "api-empty")
    try:
        api.wait_until(lambda: fetch(api.url + "/healthz")[0] == 200, "the API to listen")
        assert fetch(api.url + "/readyz")[0] == 200
        status, headers, body = fetch(api.url + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<html" in body.lower()

        cid = f"{unique}-c1"
        status, headers, body = fetch(f"{api.url}/customers/{cid}?as_of={now}")
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
        assert fetch(f"{api.url}/customers/{cid}?as_of={now}", "wrong")[0] == 401
        status, _, body = fetch(f"{api.url}/customers/{cid}?as_of={now}", TOKEN)
        card = json.loads(body)
        card.pop("alerts_active"), card.pop("why")
        assert status == 200 and card == json.loads(orjson.dumps(reference.customer(cid, now).to_dict()))

        status, _, body = fetch(f"{api.url}/leaderboard?order=bottom&limit=3&as_of={now}", TOKEN)
        assert status == 200 and [c["customer_id"] for c in json.loads(body)["customers"]] == \
            [c.customer_id for c in reference.leaderboard(now, limit=3, bottom=True)]
        assert json.loads(fetch(api.url + "/customers/nobody", TOKEN)[2]) == \
            {"error": "unknown customer 'nobody'", "status": 404}
        assert fetch(api.url + "/leaderboard?order=sideways", TOKEN)[0] == 400
        assert fetch(api.url + "/no/such/route", TOKEN)[0] == 404
        assert fetch(api.url + "/no/such/route")[0] == 401      # as a worker's: unknown paths are guarded too

        idle.wait_until(lambda: fetch(idle.url + "/healthz")[0] == 200, "the second API to listen")
        assert fetch(idle.url + "/customers/x")[0] == 404      # no token set: open
    finally:
        api.stop()
        idle.stop()
    client = redis_sync.Redis.from_url(stack.redis_url)
    try:
        assert client.keys(f"{empty}:*") == []                   # a reader claims no prefix
    finally:
        client.close()
