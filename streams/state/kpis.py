"""The business KPIs for an instant, from the shared aggregates, and the one answer for now.

Here, in the state room, because the worker (its gauges, its trend point) and the HTTP side
(`/kpis`, the live page) both read it, and neither may import the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from scoring.business import kpis_from
from scoring.config import Config
from scoring.segment_kpis import kpi_segments
from streams.clock import now_ms
from streams.state.ports import ReadStore

log = logging.getLogger("engage.kpis")
MIN_REFRESH_S = 0.05      # however short ENGAGE_KPI_INTERVAL_S, the shared KPIs are not recomputed more often


async def kpis(store: ReadStore, config: Config, as_of_ms: int, segment: str | None = None) -> dict[str, Any]:
    """Every business KPI from the shared aggregates: O(shards x window buckets), never a scan; of
    the customers in `segment` now when one is given (a segment with KPIs of its own)."""
    body = kpis_from(await store.aggregates(as_of_ms, config, segment), as_of_ms, config).to_dict()
    return body if segment is None else {"segment": segment, **body}


class LatestKpis:
    """The KPIs for now, computed at most once per `interval_s` however many ask: of everyone and of
    each segment with KPIs of its own (scoring.segment_kpis.kpi_segments), for one instant.

    `/kpis` without `as_of`, the gauges of `/metrics` and the live page all read this: one
    computation (a few dozen Redis reads and a median selection per segment) serves every request of the
    interval, and concurrent requests wait for the one in flight instead of starting their
    own. The body's `as_of_ms` says which instant it describes; `/kpis?as_of=` is always exact.
    A server runs `keep_fresh` beside it, so that no reader waits for the computation: at a
    million customers it takes ~35 ms, the p99 of `/kpis` when a request paid for it.
    """

    def __init__(self, store: ReadStore, config: Config, interval_s: float) -> None:
        self.store, self.config, self.interval_s = store, config, interval_s
        self.segments = kpi_segments(config)
        self._bodies: dict[str | None, dict[str, Any]] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._bodies is not None and time.monotonic() - self._at < self.interval_s

    async def get(self, segment: str | None = None) -> dict[str, Any]:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._compute()
        assert self._bodies is not None
        return self._bodies[segment]

    async def with_segments(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The latest KPIs of everyone and of each segment with KPIs of its own, from one computation
        (one instant): the gauges and the trend."""
        await self.get()
        bodies = self._bodies
        assert bodies is not None
        return bodies[None], {s: bodies[s] for s in self.segments}

    async def _compute(self) -> None:
        began, as_of = time.monotonic(), now_ms()
        bodies = {}
        for segment in (None, *self.segments):      # in this task: the computation is the caller's own
            bodies[segment] = await kpis(self.store, self.config, as_of, segment)
        self._bodies, self._at = bodies, began

    async def refresh(self) -> None:
        """Compute the answer now (concurrent readers wait for it rather than compute their own)."""
        async with self._lock:
            await self._compute()

    async def keep_fresh(self) -> None:
        """Recompute every half interval until cancelled, so that `get` finds the answer fresh (never
        older than the interval) and computes in line only after a failed refresh or a stall.
        A failed refresh (Redis away) is left to the next round, and to the readers' own errors."""
        if self.interval_s <= 0:
            return                      # every reader computes its own: nothing to keep
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.debug("the shared KPI answer was not refreshed: %s", exc)
            stop_if_cancelled()
            await asyncio.sleep(max(self.interval_s / 2, MIN_REFRESH_S))


def stop_if_cancelled() -> None:
    """Raise CancelledError when the running task is being cancelled. A cancel can arrive while the
    Redis client is reading and be caught inside it (tidying its connection) or turned into an
    error: a loop that goes on to its next round would then never stop, and whoever awaits its end
    (`engage api`'s cleanup, a worker's shutdown) would wait for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
