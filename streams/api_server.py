"""`engage api`: the read API and the live page in a process of their own, beside the workers.

A worker serves the same routes, but on the event loop that also decodes, scores and writes
its batches: under load a read waits for the batch's turn (the benchmark's `read` mode
measures both). The API reads only Redis, which every read already comes from (sorted sets,
sums, a customer's own keys), so any number of these processes can serve readers without
Kafka, a consumer group or a batch in the way. Same paths (`streams.api.routes`), same
bearer-token guard, same JSON errors; `/healthz` answers while the process runs, `/readyz`
while Redis answers. Plain aiohttp (Faust's own web server runs on it too).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

from scoring.config import Config
from streams import api, openapi, security
from streams.settings import Settings
from streams.store import RedisStore
from streams.views import PAGE

log = logging.getLogger("engage.api")
OPEN_PATHS = ("/", "/healthz", "/readyz", "/openapi.json")   # what a worker leaves open too
REFRESHER = web.AppKey("kpi_refresher", asyncio.Task)        # keeps the shared /kpis answer fresh


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def not_allowed(request: web.Request, allowed: set[str]) -> web.Response:
    return _json({"error": f"{request.method} is not allowed on {request.path[:200]}", "status": 405}, 405,
                 {"Allow": ", ".join(sorted(allowed))})


def create_api(settings: Settings, config: Config, store: RedisStore) -> web.Application:
    token = settings.api_token

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        """The API routes and unknown paths need the bearer token when one is set (as a worker's)."""
        if request.path not in OPEN_PATHS:
            header = request.headers.get("Authorization")
            if not security.bearer_ok(header, token):
                return _json(security.UNAUTHORIZED, 401, {"WWW-Authenticate": security.challenge(header)})
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed as exc:    # JSON like every other error
            return not_allowed(request, exc.allowed_methods)

    app = web.Application(middlewares=[guard])

    def serve(route: api.Route) -> Any:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read() if route.method == "POST" else b""
            status, answer = await api.answer(route.handler, request.query, request.match_info, body)
            return _json(answer, status)
        return handle

    methods: dict[str, set[str]] = {}
    latest = api.LatestKpis(store, config, settings.kpi_interval_s)
    for route in api.routes(store, config, latest):
        app.router.add_route(route.method, route.path, serve(route))
        methods.setdefault(route.path, set()).add(route.method)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def openapi_json(_: web.Request) -> web.Response:
        return _json(openapi.document())

    async def healthz(_: web.Request) -> web.Response:
        return _json({"status": "ok", "api": settings.key_prefix})

    async def readyz(_: web.Request) -> web.Response:
        try:
            await store.ping()
        except Exception as exc:  # noqa: BLE001
            return _json({"ready": False, "detail": f"redis unreachable: {exc}"}, 503)
        return _json({"ready": True, "detail": "ok"})

    async def not_found(request: web.Request) -> web.Response:
        if request.path in methods:        # e.g. GET /customers:batch (the catch-all matched it first)
            return not_allowed(request, methods[request.path])
        return _json({"error": f"no such route: {request.path[:201]}", "status": 404}, 404)

    app.router.add_get("/", page)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/{path:.*}", not_found)

    async def keep_kpis_fresh(app: web.Application) -> None:
        app[REFRESHER] = asyncio.get_running_loop().create_task(latest.keep_fresh())

    async def close(app: web.Application) -> None:
        if REFRESHER in app:
            app[REFRESHER].cancel()
        await store.close()

    app.on_startup.append(keep_kpis_fresh)

    app.on_cleanup.append(close)
    return app


def run_api(settings: Settings, config: Config) -> None:
    """Serve until interrupted, on ENGAGE_WEB_HOST:ENGAGE_WEB_PORT."""
    app = create_api(settings, config, RedisStore.from_settings(settings))
    web.run_app(app, host=settings.web_host, port=settings.web_port, print=None, access_log=None)
