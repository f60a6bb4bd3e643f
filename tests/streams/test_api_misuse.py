"""The HTTP API under misuse, against a real worker: bad ids, huge limits, injection-looking
input and unknown routes get a JSON 400 or 404, never a 500."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.streams.support import WorkerProcess, pipeline_settings

pytestmark = pytest.mark.services

ID_PATHS = ["/customers/", "/accounts/"]
NASTY_IDS = [
    "nobody", "x" * 300, "%7Bg%7D", "a%7D%3Ac", "..%2F..%2Fetc%2Fpasswd", "%00", "%0A", "%27%20OR%201%3D1%20--",
    "*", "%2A%3Acustomers", "%E2%80%AE", "%F0%9F%98%80", "%C3%A9", "%ED%A0%80", "eng:%7Bg%7D:kpis", "1" * 5000,
]
QUERIES = [
    "/leaderboard?limit=1000000000000", "/leaderboard?limit=-1", "/leaderboard?limit=0", "/leaderboard?limit=%C2%B2",
    "/leaderboard?limit=%EF%BC%91", "/leaderboard?limit=1e3", "/leaderboard?order=sideways", "/leaderboard?order=",
    "/leaderboard?as_of=-5", "/leaderboard?as_of=99999999999999999999", "/leaderboard?as_of=%C2%B2",
    "/at-risk?limit=abc", "/kpis?as_of=now", "/kpis?as_of=1%3B%20FLUSHALL", "/alerts/recent?limit=100000",
    "/customers/c1?as_of=NaN",
]
UNKNOWN_ROUTES = ["/nope", "/customers", "/customers/a/b", "/admin", "/%2e%2e/%2e%2e/etc/passwd", "/metrics/x"]


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_misuse_gets_json_400_or_404_never_500(stack, unique, tmp_path):
    pipeline_settings(stack, unique)
    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    try:
        worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness")
        cases = [p + i for p in ID_PATHS for i in NASTY_IDS] + QUERIES + UNKNOWN_ROUTES
        seen = {}
        for path in cases:
            status, content_type, body = fetch(worker.url + path)
            seen[path] = status
            assert status in (400, 404), (path, status, body[:200])
            assert content_type.startswith("application/json"), (path, content_type)
            error = json.loads(body)
            assert error["status"] == status and error["error"], path
        assert 400 in seen.values() and 404 in seen.values()
        assert seen["/leaderboard?limit=%C2%B2"] == 400          # '²' is a digit to str.isdigit()
        assert seen["/nope"] == 404
        assert worker.get("/readyz")[0] == 200                   # and the worker is still fine
    finally:
        worker.stop()
