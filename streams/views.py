"""The worker's HTTP routes: the API (JSON from `streams.api`), the live page, health and metrics.

The API's paths are `streams.api.routes`, served the same by `engage api`. API routes need
`Authorization: Bearer <ENGAGE_API_TOKEN>` when a token is set; `/healthz`,
`/readyz`, `/openapi.json` and `/` stay open, `/metrics` too unless `ENGAGE_METRICS_AUTH=true`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from streams import api, openapi, security
from streams.worker import Runtime

PAGE = (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")


def add_routes(app: faust.App, runtime: Runtime) -> None:
    store, config = runtime.store, runtime.config
    token = runtime.settings.api_token

    class Guarded(View):
        """Needs `Authorization: Bearer <api_token>` when a token is set (else a JSON 401)."""

        async def dispatch(self, request: Any) -> Any:
            header = request.headers.get("Authorization")
            if not security.bearer_ok(header, token):
                return self.json(security.UNAUTHORIZED, status=401,
                                 headers={"WWW-Authenticate": security.challenge(header)})
            return await super().dispatch(request)

    MetricsBase = Guarded if runtime.settings.metrics_auth else View

    def api_view(route: api.Route) -> type[View]:
        async def serve(self: View, request: Request, **params: str) -> Response:
            body = await request.read() if route.method == "POST" else b""   # type: ignore[attr-defined]
            status, answer = await api.answer(route.handler, request.query, params, body)
            return self.json(answer, status=status)

        async def refuse(self: View, request: Request, **params: str) -> Response:
            return self.json({"error": f"{request.method} is not allowed on {request.path[:200]}", "status": 405},
                             status=405, headers={"Allow": route.method})

        other = "post" if route.method == "GET" else "get"
        return type("ApiView", (Guarded,), {route.method.lower(): serve, other: refuse})

    for route in api.routes(store, config, runtime.latest_kpis):
        app.page(route.path, name=f"api {route.path}")(api_view(route))

    @app.page("/openapi.json")
    class OpenApiView(View):
        async def get(self, request: Request) -> Response:
            return self.json(openapi.document())

    @app.page("/")
    class PageView(View):
        async def get(self, request: Request) -> Response:
            return self.html(PAGE)

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "worker": runtime.worker_id})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            ready, why = await runtime.ready()
            return self.json({"ready": ready, "detail": why}, status=200 if ready else 503)

    @app.page("/metrics")
    class MetricsView(MetricsBase):  # type: ignore[valid-type,misc]
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; the full header goes in headers
            return self.bytes(await runtime.metrics_payload(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/{path:.*}")   # last: any other route is a JSON 404, like the API's own errors
    class NotFoundView(Guarded):
        async def get(self, request: Request, path: str) -> Response:
            return self.json({"error": f"no such route: /{path[:200]}", "status": 404}, status=404)
