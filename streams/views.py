"""The worker's HTTP routes: the API (JSON from `streams.api`), the live page, health and metrics.

API routes need `Authorization: Bearer <ENGAGE_API_TOKEN>` when a token is set; `/healthz`,
`/readyz` and `/` stay open, `/metrics` too unless `ENGAGE_METRICS_AUTH=true`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from streams import api, security
from streams.clock import now_ms
from streams.worker import Runtime

log = logging.getLogger("engage.worker")
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

    def live_as_of(query: Any) -> int:
        now = now_ms()
        return api.live(api.parse_as_of(query, now), now, config)

    async def reply(view: View, produce: Callable[[], Awaitable[Any]]) -> Response:
        try:
            return view.json(await produce())
        except api.ApiError as err:
            return view.json({"error": err.message, "status": err.status}, status=err.status)
        except Exception:  # noqa: BLE001 - never a bare 500 page
            log.exception("request failed")
            return view.json({"error": "internal error", "status": 500}, status=500)

    @app.page("/customers/{customer_id}")
    class CustomerView(Guarded):
        async def get(self, request: Request, customer_id: str) -> Response:
            return await reply(self, lambda: api.customer(
                store, config, customer_id, api.parse_as_of(request.query, now_ms())))

    @app.page("/accounts/{account_id}")
    class AccountView(Guarded):
        async def get(self, request: Request, account_id: str) -> Response:
            return await reply(self, lambda: api.account(
                store, config, account_id, api.parse_as_of(request.query, now_ms())))

    @app.page("/leaderboard")
    class LeaderboardView(Guarded):
        async def get(self, request: Request) -> Response:
            q = request.query
            return await reply(self, lambda: api.leaderboard(
                store, config, q.get("order", "top"), api.parse_limit(q), live_as_of(q)))

    @app.page("/at-risk")
    class AtRiskView(Guarded):
        async def get(self, request: Request) -> Response:
            q = request.query
            return await reply(self, lambda: api.at_risk(
                store, config, api.parse_limit(q, 50), live_as_of(q)))

    @app.page("/kpis")
    class KpisView(Guarded):
        async def get(self, request: Request) -> Response:
            return await reply(self, lambda: api.kpis(store, config, live_as_of(request.query)))

    @app.page("/alerts/recent")
    class RecentAlertsView(Guarded):
        async def get(self, request: Request) -> Response:
            async def produce() -> dict[str, Any]:
                return {"alerts": await store.recent_alerts(api.parse_limit(request.query, 20))}

            return await reply(self, produce)

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
