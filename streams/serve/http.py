"""Every HTTP answer of the product, built once and framework-neutral.

A worker (on Faust's web server, `streams.serve.faust_views`) and `engage api` (plain aiohttp,
`streams.serve.api_server`) serve the same `endpoints`; each adapter only translates a request
into `Asked` and a `Reply` into its framework's response. The bearer-token guard, the JSON
404/405 answers, `/healthz` and `/readyz` are written here and nowhere else.

API routes and unknown paths need `Authorization: Bearer <ENGAGE_API_TOKEN>` when a token is
set; `/`, `/healthz`, `/readyz` and `/openapi.json` stay open, and so does `/metrics` unless
`ENGAGE_METRICS_AUTH=true`. The routes that write (acknowledging and snoozing alerts) need
`ENGAGE_API_WRITE_TOKEN` instead, and are refused while it is not set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from scoring.config import Config
from streams import security
from streams.serve import api, openapi
from streams.state.kpis import LatestKpis
from streams.state.ports import ReadStore

PAGE = (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")
JSON = "application/json"


@dataclass(frozen=True)
class Asked:
    """A request as every answer reads it."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)    # the route's path parameters
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: AsyncIterator[bytes] | None = None     # a streamed answer (an export): written as read, after `body`


Answer = Callable[[Asked], Awaitable[Reply]]


@dataclass(frozen=True)
class Endpoint:
    method: str          # GET or POST
    path: str            # aiohttp's pattern syntax (Faust's web server uses it too)
    answer: Answer
    guarded: bool        # needs the bearer token when one is set
    write: bool = False  # needs the write token instead (ENGAGE_API_WRITE_TOKEN); refused while none is set


class Health(Protocol):
    """What a process says of itself on `/healthz` and `/readyz`."""

    def identity(self) -> dict[str, str]: ...

    async def ready(self) -> tuple[bool, str]: ...


def json_reply(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(body), JSON, dict(headers or {}))


def refused(authorization: str | None, token: str) -> Reply | None:
    """The guard (`security.refusal`) as a reply: a JSON 401 with its challenge, or None."""
    refusal = security.refusal(authorization, token)
    return None if refusal is None else json_reply(refusal[0], 401, refusal[1])


def refused_for(endpoint: Endpoint, authorization: str | None, read_token: str, write_token: str) -> Reply | None:
    """The guard an endpoint needs: none, the read token, or the write token (writes are off, a
    JSON 403, until one is set: a deployment that never chose to allow writes has none)."""
    if endpoint.write:
        if not write_token:
            return json_reply({"error": "alert writes are off: set ENGAGE_API_WRITE_TOKEN", "status": 403}, 403)
        return refused(authorization, write_token)
    return refused(authorization, read_token) if endpoint.guarded else None


def not_found(path: str) -> Reply:
    return json_reply({"error": f"no such route: {path[:201]}", "status": 404}, 404)


def not_allowed(method: str, path: str, allowed: Sequence[str]) -> Reply:
    return json_reply({"error": f"{method} is not allowed on {path[:200]}", "status": 405}, 405,
                      {"Allow": ", ".join(sorted(allowed))})


def endpoints(store: ReadStore, config: Config, latest: LatestKpis, health: Health,
              extra: Sequence[Endpoint] = ()) -> list[Endpoint]:
    """The API's routes (`streams.serve.api.routes`), the page, OpenAPI, health, then `extra`
    (a worker's `/metrics`)."""

    def api_answer(route: api.Route) -> Answer:
        async def answer(asked: Asked) -> Reply:
            status, body = await api.answer(route.handler, asked.query, asked.params, asked.body)
            if isinstance(body, api.Streamed):
                return Reply(status, b"", body.content_type,
                             {"Content-Disposition": f'attachment; filename="{body.filename}"'}, body.chunks)
            return json_reply(body, status)
        return answer

    async def page(_: Asked) -> Reply:
        return Reply(200, PAGE.encode(), "text/html")

    async def openapi_json(_: Asked) -> Reply:
        return json_reply(openapi.document())

    async def healthz(_: Asked) -> Reply:
        return json_reply({"status": "ok", **health.identity()})

    async def readyz(_: Asked) -> Reply:
        ready, why = await health.ready()
        return json_reply({"ready": ready, "detail": why}, 200 if ready else 503)

    served = [Endpoint(route.method, route.path, api_answer(route), guarded=True, write=route.write)
              for route in api.routes(store, config, latest)]
    return [*served, Endpoint("GET", "/", page, False), Endpoint("GET", "/openapi.json", openapi_json, False),
            Endpoint("GET", "/healthz", healthz, False), Endpoint("GET", "/readyz", readyz, False), *extra]


class RedisHealth:
    """`engage api`'s health: up while the process runs, ready while Redis answers."""

    def __init__(self, store: ReadStore, key_prefix: str) -> None:
        self.store, self.key_prefix = store, key_prefix

    def identity(self) -> dict[str, str]:
        return {"api": self.key_prefix}

    async def ready(self) -> tuple[bool, str]:
        problem = await self.store.unreachable()
        return (False, problem) if problem else (True, "ok")
