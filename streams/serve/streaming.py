"""A streamed `http.Reply` (an export) written on aiohttp, which both adapters run on.

The status and headers go first, then each chunk as it is read. A failure part way (Redis lost)
can no longer change the status: the answer is cut short without its final chunk, which an HTTP
client reports as an incomplete body, and the failure is logged.
"""

from __future__ import annotations

import logging

from aiohttp import web

from streams.serve.http import Reply

log = logging.getLogger("engage.api")


async def stream(request: web.BaseRequest, reply: Reply) -> web.StreamResponse:
    assert reply.chunks is not None
    response = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type, **reply.headers})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if reply.body:
            await response.write(reply.body)
        async for chunk in reply.chunks:
            await response.write(chunk)
    except Exception:
        log.exception("a streamed answer to %s failed part way; it was cut short", request.path)
        raise
    await response.write_eof()
    return response
