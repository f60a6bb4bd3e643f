"""The shared-KPI refresher stops when cancelled, even when the cancel is caught on its way.

A Redis client reading a reply when the cancel arrives can catch it (to tidy its connection) and
return or raise an error instead; the refresher must still end, or `engage api`'s cleanup and a
worker's shutdown, which await it, wait for ever. Fast tier: no Redis, the refresh is a stand-in.
"""

from __future__ import annotations

import asyncio

import pytest

from streams.state.kpis import LatestKpis
from tests.builders import CONFIG


@pytest.mark.parametrize("caught_as", ["nothing", "an error"])
def test_a_cancel_caught_inside_a_refresh_still_stops_the_refresher(caught_as):
    async def scenario() -> None:
        latest = LatestKpis(None, CONFIG, 0.2)  # type: ignore[arg-type]
        inside = asyncio.Event()

        async def refresh() -> None:          # a client that catches the cancel while it reads
            inside.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if caught_as == "an error":
                    raise ConnectionError("connection closed while reading") from None

        latest.refresh = refresh              # type: ignore[method-assign]
        refresher = asyncio.get_running_loop().create_task(latest.keep_fresh())
        await inside.wait()
        refresher.cancel()
        done, _ = await asyncio.wait({refresher}, timeout=2)
        assert done == {refresher} and refresher.cancelled()

    # a loop of its own, closed without waiting for what is still running: a refresher that never
    # stops fails the assertion above instead of hanging the run's shutdown
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
