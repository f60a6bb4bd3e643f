"""The Faust adapter: a worker serves `streams.serve.http.endpoints` on Faust's own web server.

It only translates: a Faust request into `http.Asked`, a `http.Reply` into a Faust response,
and the guard, 404 and 405 answers are `streams.serve.http`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faust
from faust.web import Request, Response, View

from streams.serve import http
from streams.serve.streaming import stream


def _response(view: View, reply: http.Reply) -> Response:
    # aiohttp refuses a charset inside content_type (/metrics has one): the full header goes in headers
    return view.bytes(reply.body, status=reply.status, headers={"Content-Type": reply.content_type, **reply.headers})


def add_routes(app: faust.App, served: Sequence[http.Endpoint], token: str, write_token: str = "") -> None:
    """One view per path: its endpoints' methods, a JSON 405 for the other of GET and POST, the
    guard on the guarded ones; last, a JSON 404 for any other path (guarded, like the API)."""
    by_path: dict[str, dict[str, http.Endpoint]] = {}
    for endpoint in served:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint

    def view(methods: dict[str, http.Endpoint]) -> type[View]:
        def serve(endpoint: http.Endpoint) -> Any:
            async def handle(self: View, request: Request, **params: str) -> Response:
                refusal = http.refused_for(endpoint, request.headers.get("Authorization"), token, write_token)
                if refusal is not None:
                    return _response(self, refusal)
                body = await request.read() if endpoint.method == "POST" else b""   # type: ignore[attr-defined]
                asked = http.Asked(request.method, request.path, request.query, params, body)
                reply = await endpoint.answer(asked)
                if reply.chunks is not None:    # Faust's web server is aiohttp's: its request streams
                    return await stream(request, reply)  # type: ignore[arg-type,return-value]
                return _response(self, reply)
            return handle

        async def refuse(self: View, request: Request, **params: str) -> Response:
            return _response(self, http.not_allowed(request.method, request.path, list(methods)))

        members = {method.lower(): serve(endpoint) for method, endpoint in methods.items()}
        for other in ("get", "post"):
            members.setdefault(other, refuse)
        return type("EndpointView", (View,), members)

    for path, methods in by_path.items():
        app.page(path, name=f"engage {path}")(view(methods))

    @app.page("/{path:.*}")   # last: any other route is a JSON 404, like the API's own errors
    class NotFoundView(View):
        async def get(self, request: Request, path: str) -> Response:
            refusal = http.refused(request.headers.get("Authorization"), token)
            return _response(self, refusal or http.not_found(request.path))
