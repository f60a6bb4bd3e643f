"""`engage api`: the read API in a process of its own, on a real Redis.

Its answers equal the worker's, and so the core's, in the end-to-end tests
(tests/streams/test_pipeline.py, single Redis and Redis Cluster); here, what is its own:
the token guard, health, readiness, the page, errors, and that it never writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

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


def children(pid: int) -> set[int]:
    """The live processes whose parent is `pid` (from /proc), multiprocessing's resource tracker aside."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in command:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, exited but not yet reaped, does not)."""
    try:
        return b"(zombie)" not in Path(f"/proc/{pid}/status").read_bytes()
    except OSError:
        return False


def listening_sockets(port: int) -> int:
    """Sockets listening on the TCP port (/proc/net/tcp): one per process bound with SO_REUSEPORT."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A")


def test_engage_api_in_several_processes_shares_its_port_and_starts_again_a_process_that_dies(stack, unique,
                                                                                              tmp_path):
    now = now_ms()
    event = orjson.dumps({"event_id": f"{unique}-1", "customer_id": f"{unique}-c", "type": "like", "ts": now - 1000})

    async def write() -> None:
        store = RedisStore.from_url(stack.redis_url, unique)
        try:
            await store.check_layout()
            await BatchWriter(CONFIG, store).write([Incoming(event, None, "events", 0, 0, now)], now)
        finally:
            await store.close()

    asyncio.run(write())
    api = ApiProcess(stack, unique, tmp_path, extra_env={"ENGAGE_API_PROCESSES": "3"})
    try:
        api.wait_until(lambda: len(children(api.process.pid)) == 3 and listening_sockets(api.port) == 3
                       and fetch(api.url + "/readyz")[0] == 200, "three processes on the port")
        first = children(api.process.pid)
        for _ in range(20):           # a new connection each: the kernel spreads them over the three
            status, _, body = fetch(f"{api.url}/customers/{unique}-c?as_of={now}")
            assert status == 200 and json.loads(body)["customer_id"] == f"{unique}-c"
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        api.wait_until(lambda: victim not in children(api.process.pid) and len(children(api.process.pid)) == 3
                       and listening_sockets(api.port) == 3, "the dead process started again")
        assert len(children(api.process.pid) - first) == 1
        assert all(fetch(api.url + "/readyz")[0] == 200 for _ in range(10))
        assert f"(pid {victim}) exited with code -9; starting it again" in api.log.read_text()
        serving = children(api.process.pid)
        api.process.send_signal(signal.SIGTERM)
        assert api.process.wait(timeout=30) == 0
        assert not [pid for pid in serving if alive(pid)]
        assert listening_sockets(api.port) == 0
    finally:
        api.stop()


def test_engage_api_processes_that_cannot_start_stop_the_group_with_the_reason(stack, unique, tmp_path):
    with socket.socket() as taken:          # the port held by another program (no SO_REUSEPORT)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api = ApiProcess(stack, unique, tmp_path, extra_env={"ENGAGE_API_PROCESSES": "2"},
                         port=taken.getsockname()[1])
        try:
            code = api.process.wait(timeout=60)
        finally:
            api.stop()
    log = api.log.read_text()
    assert code == 1 and "twice within 5 s of its start; stopping" in log and "address already in use" in log.lower()


def test_engage_api_processes_stop_by_themselves_when_their_supervisor_is_killed_outright(stack, unique, tmp_path):
    """SIGKILL leaves the supervisor no chance to stop them: each notices and stops, and the port is free."""
    api = ApiProcess(stack, unique, tmp_path, extra_env={"ENGAGE_API_PROCESSES": "2"})
    orphans: set[int] = set()
    try:
        api.wait_until(lambda: len(children(api.process.pid)) == 2 and listening_sockets(api.port) == 2,
                       "two processes on the port")
        orphans = children(api.process.pid)
        api.process.kill()
        api.process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (listening_sockets(api.port) or any(alive(pid) for pid in orphans)):
            time.sleep(0.2)
        assert listening_sockets(api.port) == 0 and not [pid for pid in orphans if alive(pid)]
        assert api.log.read_text().count("is gone; stopping") == 2
    finally:
        api.stop()
        for pid in orphans:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
