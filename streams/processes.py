"""The worker process assembled from its rooms: the Faust worker and, on its web server, the
HTTP answers of the serve room with the worker's own health and `/metrics`.

Here, above both rooms, because neither may import the other. `engage api` and
`engage alert-sink` are one room each (`streams.serve.api_server`, `streams.sink.alert_sink`).
"""

from __future__ import annotations

import faust
from prometheus_client import CONTENT_TYPE_LATEST

from scoring.config import Config
from streams.serve import http
from streams.serve.faust_views import add_routes
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.runtime import Runtime


def worker_app(settings: Settings, config: Config) -> tuple[faust.App, Runtime]:
    """A worker's Faust app (touching no service yet) with every HTTP route mounted."""
    app, runtime = create_app(settings, config)

    async def metrics(_: http.Asked) -> http.Reply:
        return http.Reply(200, await runtime.health.metrics_payload(), CONTENT_TYPE_LATEST)

    scrape = http.Endpoint("GET", "/metrics", metrics, guarded=settings.metrics_auth)
    served = http.endpoints(runtime.store, config, runtime.latest_kpis, runtime.health, [scrape])
    add_routes(app, served, settings.api_token, settings.api_write_token)
    return app, runtime
