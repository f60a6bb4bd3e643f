"""`engage api`: the read API and the live page in a process of their own, beside the workers.

A worker serves the same answers (`streams.serve.http.endpoints`), but on the event loop that
also decodes, scores and writes its batches: under load a read waits for the batch's turn (the
benchmark's `read` mode measures both). The API reads only Redis, which every read already
comes from (sorted sets, sums, a customer's own keys), so any number of these processes can
serve readers without Kafka, a consumer group or a batch in the way. `/healthz` answers while
the process runs, `/readyz` while Redis answers. This module is the aiohttp adapter: it only
translates requests and replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from aiohttp import web

from scoring.config import Config
from streams.gc_tuning import quiet_collector
from streams.serve import http
from streams.serve.streaming import stream
from streams.settings import Settings
from streams.state.kpis import LatestKpis
from streams.state.store import RedisStore

REFRESHER = web.AppKey("kpi_refresher", asyncio.Task)        # keeps the shared /kpis answer fresh
FOLLOWER = web.AppKey("supervisor_follower", asyncio.Task)    # stops a supervised process whose supervisor is gone
PARENT_CHECK_S = 1.0
log = logging.getLogger(__name__)


def _response(reply: http.Reply) -> web.Response:
    return web.Response(body=reply.body, status=reply.status, content_type=reply.content_type,
                        headers=dict(reply.headers))


def create_api(settings: Settings, config: Config, store: RedisStore) -> web.Application:
    latest = LatestKpis(store, config, settings.kpi_interval_s)
    served = http.endpoints(store, config, latest, http.RedisHealth(store, settings.key_prefix))
    open_paths = {e.path for e in served if not e.guarded}
    write_paths = {e.path for e in served if e.write}      # guarded by their handler, with the write token
    methods: dict[str, list[str]] = {}
    for endpoint in served:
        methods.setdefault(endpoint.path, []).append(endpoint.method)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        pattern = resource.canonical if resource is not None else None
        if request.path not in open_paths and pattern not in write_paths:
            refusal = http.refused(request.headers.get("Authorization"), settings.api_token)
            if refusal is not None:
                return _response(refusal)
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed as exc:    # JSON like every other error
            return _response(http.not_allowed(request.method, request.path, list(exc.allowed_methods)))

    app = web.Application(middlewares=[guard])

    def handler(endpoint: http.Endpoint) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            if endpoint.write:
                refusal = http.refused_for(endpoint, request.headers.get("Authorization"), settings.api_token,
                                           settings.api_write_token)
                if refusal is not None:
                    return _response(refusal)
            body = await request.read() if endpoint.method == "POST" else b""
            asked = http.Asked(request.method, request.path, request.query, request.match_info, body)
            reply = await endpoint.answer(asked)
            return _response(reply) if reply.chunks is None else await stream(request, reply)
        return handle

    for endpoint in served:
        app.router.add_route(endpoint.method, endpoint.path, handler(endpoint))

    async def not_found(request: web.Request) -> web.Response:
        if request.path in methods:        # e.g. GET /customers:batch (the catch-all matched it first)
            return _response(http.not_allowed(request.method, request.path, methods[request.path]))
        return _response(http.not_found(request.path))

    app.router.add_get("/{path:.*}", not_found)

    async def keep_kpis_fresh(app: web.Application) -> None:
        app[REFRESHER] = asyncio.get_running_loop().create_task(latest.keep_fresh())

    async def close(app: web.Application) -> None:
        if REFRESHER in app:        # stopped, and its Redis call ended, before the store closes
            refresher = app[REFRESHER]
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        await store.close()

    app.on_startup.append(keep_kpis_fresh)
    app.on_cleanup.append(close)
    return app


def run_api(settings: Settings, config: Config) -> int:
    """Serve until interrupted, on ENGAGE_WEB_HOST:ENGAGE_WEB_PORT: in this process, or in
    ENGAGE_API_PROCESSES processes sharing the port (streams.serve.supervisor). The exit code."""
    if settings.api_processes == 1:
        serve(settings, config)
        return 0
    from streams.serve.supervisor import Supervisor

    return Supervisor(settings.api_processes, serve, (settings, config, os.getpid())).run()


def serve(settings: Settings, config: Config, supervisor: int | None = None) -> None:
    """One process serving the API until SIGTERM or SIGINT. Under a `supervisor` (its pid): beside
    the others on the port, and stopping by itself when the supervisor is gone (killed outright,
    it could not stop it), so that no orphan keeps serving the port."""
    app = create_api(settings, config, RedisStore.from_settings(settings))
    if supervisor is not None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app.on_startup.append(lambda app: _follow(app, supervisor))
        app.on_cleanup.append(_unfollow)
    quiet_collector()
    web.run_app(app, host=settings.web_host, port=settings.web_port, print=None, access_log=None,
                reuse_port=supervisor is not None or None)


async def _follow(app: web.Application, supervisor: int) -> None:
    async def watch() -> None:
        while os.getppid() == supervisor:
            await asyncio.sleep(PARENT_CHECK_S)
        log.warning("engage api: its supervisor (pid %d) is gone; stopping", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)          # aiohttp's own graceful stop
    app[FOLLOWER] = asyncio.get_running_loop().create_task(watch())


async def _unfollow(app: web.Application) -> None:
    if FOLLOWER in app:
        app[FOLLOWER].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app[FOLLOWER]
